"""Readers for benchmark files in their original formats, and the fixed-seed splits for sets that ship without one.

Every reader takes plain paths and returns a `ClassificationData` whose rows are as the files give them: rows with
an empty text or a missing label are left for `check_data` to drop and count (sets that need a split made here drop
them first, with a count, so that the split sizes are the documented ones). Compressed files (`.gz`, `.xz`, `.bz2`)
are read as they are; nothing is extracted to disk.
"""
from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import random
import re
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Callable, Iterator

from ulmfit.benchmarks.data import ClassificationData, LabelledTexts, drop_unusable, is_missing
from ulmfit.errors import UlmfitError
from ulmfit.files import COMPRESSION_SUFFIXES, DECOMPRESSION_ERRORS, open_compressed

log = logging.getLogger(__name__)

def read_bytes(path: Path) -> bytes:
    """The content of `path`, decompressed when it is gzip, xz or bz2."""
    try:
        with open_compressed(path) as f:
            return f.read()
    except FileNotFoundError:
        raise UlmfitError(f"{path} does not exist: check the path.") from None
    except IsADirectoryError:
        raise UlmfitError(f"{path} is a directory: give a file.") from None
    except DECOMPRESSION_ERRORS as e:
        raise UlmfitError(f"{path} could not be read ({e}): check that the file is complete.") from None


def python_encoding(encoding: str) -> str:
    """The codec that reads `encoding`; utf-8 becomes utf-8-sig, which also reads files with a byte-order mark
    (Excel writes one) and is utf-8 otherwise. An unknown name gets one sentence."""
    try:
        name = codecs.lookup(encoding).name
        b"".decode(name)  # a bytes-to-bytes codec (base64, rot13) has a name but decodes no text
    except LookupError:
        raise UlmfitError(f"'{encoding}' is not a known text encoding: give one such as utf-8, latin-1 or cp1252.") \
            from None
    return "utf-8-sig" if name == "utf-8" else name


DAMAGED = "the file is damaged or not the expected one: download it again"


def name_the_encoding(how: str) -> str:
    """The fix for a file in another encoding, `how` being the way to name it (`--encoding`, a spec's key)."""
    return f"give its encoding with {how} (for example latin-1 or cp1252)"


def encoding_error(source: str, encoding: str, error: UnicodeDecodeError, where: str = "",
                   fix: str = DAMAGED) -> UlmfitError:
    """One sentence for text that is not valid in `encoding`: the file, the byte and the `fix` (by default: a file
    that ships with a task has a fixed encoding, so it is damaged; see `name_the_encoding` for users' files)."""
    byte = f"byte {error.object[error.start]:#04x}" if error.start < len(error.object) else "a cut-off character"
    return UlmfitError(f"{source} is not valid {encoding} ({byte} {where or f'at offset {error.start}'}): {fix}.")


def decode(raw: bytes, encoding: str, source: str, fix: str = DAMAGED) -> str:
    """`raw` as text; a byte that is not valid in `encoding` gets one sentence that names the file and the fix."""
    try:
        return raw.decode(python_encoding(encoding))
    except UnicodeDecodeError as e:
        raise encoding_error(source, encoding, e, fix=fix) from None


def read_text(path: Path, encoding: str = "utf-8", fix: str = DAMAGED) -> str:
    return decode(read_bytes(path), encoding, str(path), fix)


def allow_large_csv_fields() -> None:
    """Let Python's csv module read cells of any length: its default limit is 131,072 characters, which a long
    document passes. The limit is a C long, 32 bits on some platforms, hence the halving."""
    limit = sys.maxsize
    while limit > csv.field_size_limit():
        try:
            csv.field_size_limit(limit)
        except OverflowError:
            limit //= 2


def zip_member(path: Path, member: str | Callable[[str], bool], encoding: str = "utf-8") -> str:
    """One file inside a zip archive, as text: the member's name, or the first name a predicate accepts."""
    try:
        with zipfile.ZipFile(path) as z:
            name = member if isinstance(member, str) else next((n for n in z.namelist() if member(n)), None)
            if name is None:
                raise KeyError(name)
            raw = z.read(name)
    except KeyError:
        wanted = member if isinstance(member, str) else "the data file"
        raise UlmfitError(f"{path} has no member {wanted}: it is not the expected archive, download it again.") \
            from None
    except (zipfile.BadZipFile, OSError):
        raise UlmfitError(f"{path} is not a readable zip archive: download it again.") from None
    return decode(raw, encoding, f"{path}:{name}")


# ---------------------------------------------------------------------------------------------- generic tables

def table_rows(text: str, fmt: str, source: str) -> Iterator[dict]:
    """The rows of a CSV, TSV or JSON-lines text as dicts (column name → cell)."""
    if fmt == "jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError as e:
                    raise UlmfitError(f"{source} line {number} is not JSON ({e}): fix the line or the file format.") \
                        from None
                if not isinstance(row, dict):
                    raise UlmfitError(f"{source} line {number} is not a JSON object: write one object per line.")
                yield row
        return
    allow_large_csv_fields()
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if fmt == "tsv" else ",")
    try:
        yield from reader
    except csv.Error as e:
        raise UlmfitError(f"{source} is not valid {fmt.upper()} near line {reader.line_num} ({e}): fix the file.") \
            from None


def table_format(path: Path) -> str:
    """csv, tsv or jsonl, from the file name (a compression suffix is looked through)."""
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in COMPRESSION_SUFFIXES]
    fmt = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(
        suffixes[-1] if suffixes else "")
    if fmt is None:
        raise UlmfitError(f"{path} is not a .csv, .tsv or .jsonl file: rename it, or convert it to one of those.")
    return fmt


def read_table(path: Path, text_col: str, label_col: str, encoding: str = "utf-8",
               label_sep: str | None = None, fix: str = name_the_encoding("--encoding")) -> LabelledTexts:
    """Texts and labels from two columns of a CSV, TSV or JSONL file.

    With `label_sep` the task is multi-label: a cell is split on it (a JSON list is taken as it is), and an empty
    cell means that no label applies. Without it, a missing or empty cell is a missing label. `fix` is what a
    file in another encoding is told to do (see `encoding_error`).
    """
    fmt = table_format(path)
    texts, labels = [], []
    for row in table_rows(read_text(path, encoding, fix), fmt, str(path)):
        if not texts and (absent := [c for c in (text_col, label_col) if c not in row]):
            raise UlmfitError(f"{path} has no column {absent[0]!r} (its columns: {', '.join(map(str, row))}): "
                              "set text_col and label_col to the right names.")
        texts.append(row.get(text_col))
        labels.append(_label(row.get(label_col), label_sep))
    if not texts:
        raise UlmfitError(f"{path} has no rows: check that it is the right file.")
    return LabelledTexts(texts, labels)


def _label(cell, label_sep: str | None):
    if label_sep is None:
        return None if cell is None else str(cell).strip()
    if isinstance(cell, list):
        return [str(c).strip() for c in cell if str(c).strip()]
    if cell is None:
        return None
    return [part.strip() for part in str(cell).split(label_sep) if part.strip()]


# ---------------------------------------------------------------------------------------------- fixed-seed splits

def carve(split: LabelledTexts, fractions: list[float], seed: int) -> list[LabelledTexts]:
    """Random held-out parts of `split` (each `int(n * fraction)` rows), then what is left, all in file order.

    The shuffle is Python's `random.Random(seed)`, which gives the same permutation on every platform and version.
    """
    order = list(range(len(split)))
    random.Random(seed).shuffle(order)
    parts, start = [], 0
    for fraction in fractions:
        size = int(len(order) * fraction)
        parts.append(sorted(order[start:start + size]))
        start += size
    parts.append(sorted(order[start:]))
    return [LabelledTexts([split.texts[i] for i in part], [split.labels[i] for i in part]) for part in parts]


def with_splits(lang: str, labels: list[str], train: LabelledTexts, test: LabelledTexts | None, seed: int,
                valid_frac: float = 0.1, test_frac: float = 0.1, dropped: dict[str, int] | None = None,
                multi_label: bool = False, valid: LabelledTexts | None = None,
                unlabelled: list[str] | None = None) -> ClassificationData:
    """A `ClassificationData` whose missing valid (and test) splits are carved from `train` with a fixed seed.

    Unusable rows are dropped (and counted) before carving, so the sizes do not depend on where they fell.
    """
    dropped = dict(dropped or {})
    if valid is None or test is None:
        train = drop_unusable(train, "train" if test is not None else "whole (before splitting)", dropped)
        fractions = ([] if test is not None else [test_frac]) + ([] if valid is not None else [valid_frac])
        parts = carve(train, fractions, seed)
        if test is None:
            test, parts = parts[0], parts[1:]
        if valid is None:
            valid, parts = parts[0], parts[1:]
        train = parts[0]
    return ClassificationData(lang=lang, labels=labels, train=train, valid=valid, test=test, multi_label=multi_label,
                              unlabelled=unlabelled or [], dropped=dropped)


# ---------------------------------------------------------------------------------------------- the benchmarks

_IMDB_MEMBER = re.compile(r"^(?:\./)?aclImdb/(train|test)/(pos|neg|unsup)/(\d+)_\d+\.txt$")


def imdb_tar(paths: list[Path], seed: int) -> ClassificationData:
    """aclImdb (Maas et al. 2011) straight from its tar archive, read as a stream: nothing is extracted.

    Reviews are ordered by split, label and numeric id; `train/unsup` (present in the original archive, not in the
    labelled-only repack) becomes `unlabelled`.
    """
    rows: dict[tuple[str, str], list[tuple[int, str]]] = {}
    try:
        with tarfile.open(paths[0], mode="r|*") as tar:
            for member in tar:
                if member.isfile() and (m := _IMDB_MEMBER.match(member.name)):
                    text = decode(tar.extractfile(member).read(), "utf-8", f"{paths[0]}:{member.name}")
                    rows.setdefault((m[1], m[2]), []).append((int(m[3]), text))
    except (tarfile.TarError, *DECOMPRESSION_ERRORS) as e:
        raise UlmfitError(f"{paths[0]} is not a readable tar archive ({e}): download it again.") from None

    def split(name: str) -> LabelledTexts:
        pairs = [(label, text) for label in ("neg", "pos") for _, text in sorted(rows.get((name, label), []))]
        return LabelledTexts([t for _, t in pairs], [lab for lab, _ in pairs])

    if not rows.get(("train", "pos")):
        raise UlmfitError(f"{paths[0]} has no aclImdb/train/pos/*.txt reviews: it is not the aclImdb archive.")
    unsup = [text for _, text in sorted(rows.get(("train", "unsup"), []))]
    return with_splits("en", ["neg", "pos"], split("train"), split("test"), seed, unlabelled=unsup)


def imdb_sample(paths: list[Path], seed: int) -> ClassificationData:
    """The derived 1k IMDb sample: a CSV with split, label and text columns."""
    rows = list(table_rows(read_text(paths[0]), "csv", str(paths[0])))

    def split(name: str) -> LabelledTexts:
        chosen = [r for r in rows if r["split"] == name]
        return LabelledTexts([r["text"] for r in chosen], [r["label"] for r in chosen])

    return with_splits("en", ["neg", "pos"], split("train"), split("test"), seed)


def trec(paths: list[Path], seed: int, fine: bool) -> ClassificationData:
    """TREC question classification (Li & Roth 2002): lines of `COARSE:fine question`; the train file is Latin-1."""

    def read(path: Path) -> LabelledTexts:
        texts, labels = [], []
        for line in read_text(path, "latin-1").splitlines():
            if line.strip():
                label, _, question = line.partition(" ")
                texts.append(question)
                labels.append(label if fine else label.split(":")[0])
        return LabelledTexts(texts, labels)

    train, test = read(paths[0]), read(paths[1])
    return with_splits("en", sorted(set(train.labels)), train, test, seed)


def line_files(paths: list[Path], labels: list[str], seed: int, lang: str = "en",
               encoding: str = "utf-8") -> ClassificationData:
    """One text per line, one file per class (SentEval's MR, CR, SUBJ, MPQA); no split ships, so one is made."""
    texts, targets = [], []
    for path, label in zip(paths, labels):
        lines = read_text(path, encoding).splitlines()
        texts += lines
        targets += [label] * len(lines)
    return with_splits(lang, labels, LabelledTexts(texts, targets), None, seed)


def wisesight(paths: list[Path], seed: int, kaggle_test: bool) -> ClassificationData:
    """wisesight-sentiment: train/valid/test JSON lines inside `huggingface_data.zip`.

    With `kaggle_test` the test split is the Kaggle competition's labelled test set (two parallel line files)
    instead of the zip's test.jsonl, which is the same set less three rows whose text is `#ERROR!`.
    """

    def member(name: str) -> LabelledTexts:
        rows = list(table_rows(zip_member(paths[0], f"data/{name}.jsonl"), "jsonl", f"{paths[0]}:{name}.jsonl"))
        return LabelledTexts([r.get("texts") for r in rows], [r.get("category") for r in rows])

    if kaggle_test:
        texts = read_text(paths[1]).split("\n")
        labels = read_text(paths[2]).split("\n")
        if texts[-1:] == [""] and labels[-1:] == [""]:  # the final newline
            texts, labels = texts[:-1], labels[:-1]
        if len(texts) != len(labels):
            raise UlmfitError(f"{paths[1]} has {len(texts)} lines but {paths[2]} has {len(labels)}: "
                              "the two files must be parallel, download them again.")
        test = LabelledTexts(texts, labels)
    else:
        test = member("test")
    return with_splits("th", ["pos", "neu", "neg", "q"], member("train"), test, seed, valid=member("valid"))


def sophonplus(paths: list[Path], seed: int) -> ClassificationData:
    """A SophonPlus ChineseNlpCorpus sentiment CSV (`label,review`, 1 positive / 0 negative), in a zip or not."""
    path = paths[0]
    if path.suffix == ".zip":
        text = zip_member(path, lambda name: name.endswith(".csv") and not name.startswith("__MACOSX"))
    else:
        text = read_text(path)
    rows = list(table_rows(text, "csv", str(path)))
    names = {"0": "neg", "1": "pos"}
    labels = [names.get(cell, cell) for cell in ((r.get("label") or "").strip() for r in rows)]
    return with_splits("zh", ["neg", "pos"], LabelledTexts([r.get("review") for r in rows], labels), None, seed)


def tnews(paths: list[Path], seed: int) -> ClassificationData:
    """CLUE TNEWS: `title<TAB>label` lines (train, dev) and the label list; dev is the test split here."""
    dropped: dict[str, int] = {}

    def read(path: Path) -> LabelledTexts:
        texts, labels, bad = [], [], 0
        for line in read_text(path).splitlines():
            fields = line.split("\t")
            if len(fields) == 2:
                texts.append(fields[0])
                labels.append(fields[1])
            elif line.strip():
                bad += 1
        if bad:
            dropped["malformed"] = dropped.get("malformed", 0) + bad
            log.warning("%s: dropped %d line(s) without exactly one tab", path, bad)
        return LabelledTexts(texts, labels)

    labels = [line.strip() for line in read_text(paths[2]).splitlines() if line.strip()]
    return with_splits("zh", labels, read(paths[0]), read(paths[1]), seed, dropped=dropped)


GERMEVAL_COLUMNS = {"Sub1_Toxic": "toxic", "Sub2_Engaging": "engaging", "Sub3_FactClaiming": "fact_claiming"}


def germeval2021(paths: list[Path], seed: int, multi_label: bool) -> ClassificationData:
    """GermEval 2021 (comment_text plus three 0/1 columns): toxic vs not, or all three as a multi-label task."""

    def read(path: Path) -> LabelledTexts:
        rows = list(table_rows(read_text(path), "csv", str(path)))
        if multi_label:
            labels = [None if any(is_missing(r.get(c)) for c in GERMEVAL_COLUMNS)
                      else [name for c, name in GERMEVAL_COLUMNS.items() if r[c].strip() == "1"] for r in rows]
        else:
            names = {"0": "not_toxic", "1": "toxic"}
            labels = [names.get(cell, cell) for cell in ((r.get("Sub1_Toxic") or "").strip() for r in rows)]
        return LabelledTexts([r.get("comment_text") for r in rows], labels)

    labels = list(GERMEVAL_COLUMNS.values()) if multi_label else ["not_toxic", "toxic"]
    return with_splits("de", labels, read(paths[0]), read(paths[2]), seed, valid=read(paths[1]),
                       multi_label=multi_label)
