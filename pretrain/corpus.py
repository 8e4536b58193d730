"""`ulmfit prepare`: a source of articles → cleaned text → tokenizer → token-id files and `meta.json`.

The corpus directory (DESIGN.md): `train.bin`/`valid.bin` (flat ids, `xxbos` before each article), `spm.model` or
`vocab.json`, `meta.json`, and the cleaned text in `text/` so a new tokenizer needs no new parse. Three stages,
each remembered in `.stages.json` by a key of everything it depends on, so a re-run redoes only what an option
changed. `meta.json` is written last: a directory without it is not a finished corpus.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import json
import logging
import os
import random
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm.auto import tqdm

from ulmfit import __version__
from ulmfit.errors import UlmfitError
from ulmfit.files import atomic_write_text, file_digest, read_json, write_json
from ulmfit.langs import Language, get_lang
from ulmfit.langs.rules import default_rules, make_preprocessor
from ulmfit.pretrain import tokenizer as tk
from ulmfit.pretrain.clean import clean_wikitext, tidy_plain
from ulmfit.pretrain.parallel import default_workers, ordered_map
from ulmfit.pretrain.sources import Batch, DumpSource, HubSource, Source, TextSource, _blocks

log = logging.getLogger(__name__)

PIPELINE_VERSION = 1  # bump when cleaning or encoding gives different output for the same inputs
FORMAT = "ulmfit-corpus"
STAGES_FILE = ".stages.json"
SPLITS = ("train", "valid")
BATCH_DOCS = 256


@dataclass
class PrepareOptions:
    """Every option that shapes a corpus. `vocab_size` None means 15,000 for SentencePiece, 60,000 for words."""

    tokenizer: str = "sentencepiece"
    vocab_size: int | None = None
    min_freq: int = 3
    valid_frac: float = 0.05
    max_tokens: int | None = None
    min_chars: int = 200
    sp_sentences: int = 1_000_000
    rules: list[str] | None = None

    def __post_init__(self) -> None:
        if self.tokenizer not in ("sentencepiece", "word"):
            raise UlmfitError(f"unknown tokenizer '{self.tokenizer}'; use 'sentencepiece' or 'word'.")
        if self.vocab_size is None:
            self.vocab_size = 15_000 if self.tokenizer == "sentencepiece" else 60_000
        if not 0 <= self.valid_frac < 1:
            raise UlmfitError(f"--valid-frac must be at least 0 and below 1, not {self.valid_frac}.")
        if self.max_tokens is not None and self.max_tokens <= 0:
            raise UlmfitError(f"--max-tokens must be positive, not {self.max_tokens}.")
        if self.vocab_size < len(tk.SPECIAL_TOKENS) + 1:
            raise UlmfitError(f"--vocab-size must be above {len(tk.SPECIAL_TOKENS)}, not {self.vocab_size}.")


def make_source(lang: Language, min_chars: int, *, dump: str | Path | None = None, hf_dataset: str | None = None,
                text: list[Path] | None = None, sample: bool = False, cache_dir: Path | None = None) -> Source:
    """The one source named by the options (exactly one of them)."""
    given = [name for name, value in (("--dump", dump), ("--hf-dataset", hf_dataset), ("--text", text),
                                      ("--sample", sample)) if value]
    if len(given) != 1:
        raise UlmfitError(
            "give exactly one source: --dump PATH|URL|latest, --hf-dataset, --text PATH or --sample"
            + (f" (got {', '.join(given)})." if given else ".")
        )
    if sample:
        from ulmfit.sample import sample_dump

        return DumpSource(lang=lang, min_chars=min_chars, path=sample_dump(lang.code))
    if dump:
        from ulmfit.pretrain.download import resolve_dump

        spec = str(dump)
        path = resolve_dump(spec, lang, cache_dir)
        url = spec if spec == "latest" or "://" in spec else None
        return DumpSource(lang=lang, min_chars=min_chars, path=path, url=lang.dump_url() if url == "latest" else url)
    if hf_dataset:
        config = lang.hf_config if hf_dataset == "wikimedia/wikipedia" else None
        return HubSource(lang=lang, min_chars=min_chars, dataset=hf_dataset, config_name=config)
    return TextSource(lang=lang, min_chars=min_chars, paths=[Path(p) for p in text])


def prepare_corpus(lang: str | Language, out: Path | str, *, dump: str | Path | None = None,
                   hf_dataset: str | None = None, text: list[Path] | None = None, sample: bool = False,
                   options: PrepareOptions | None = None, workers: int | None = None,
                   cache_dir: Path | None = None) -> dict:
    """Prepare a corpus directory from one source and return its `meta.json` content."""
    lang = get_lang(lang) if isinstance(lang, str) else lang
    options = options or PrepareOptions()
    rules = options.rules if options.rules is not None else default_rules(lang, options.tokenizer)
    make_preprocessor(lang, rules)  # fail on an unknown rule before any work
    if options.tokenizer == "word" and lang.word_tokenizer is None:
        raise UlmfitError(
            f"{lang.name} ({lang.code}) has no word tokenizer; use --tokenizer sentencepiece for this language."
        )
    workers = workers or default_workers()
    out = Path(out)
    source = make_source(lang, options.min_chars, dump=dump, hf_dataset=hf_dataset, text=text, sample=sample,
                         cache_dir=cache_dir)

    keys = {"extract": _key(PIPELINE_VERSION, lang.code, source.identity(), options.min_chars, options.valid_frac)}
    keys["tokenizer"] = _key(keys["extract"], options.tokenizer, options.vocab_size, options.min_freq,
                             options.sp_sentences, rules, lang.sp_coverage)
    keys["ids"] = _key(keys["tokenizer"], options.max_tokens)

    created = _writable_dir(out)
    stamps = _read_stamps(out)
    meta_path = out / "meta.json"
    if meta_path.exists() and stamps == keys:
        log.info("%s is already prepared with these inputs; nothing to do", out)
        return json.loads(meta_path.read_text(encoding="utf-8"))
    meta_path.unlink(missing_ok=True)
    try:
        if stamps.get("extract") != keys["extract"] or not (out / "text" / "stats.json").exists():
            stamps = {}
            _write_stamps(out, stamps)
            with _timed(out, "extract"):
                _extract(source, out / "text", options.valid_frac, workers)
            stamps["extract"] = keys["extract"]
            _write_stamps(out, stamps)
        else:
            log.info("cleaned text in %s/text is up to date; not reading the source again", out)
        stats = json.loads((out / "text" / "stats.json").read_text(encoding="utf-8"))

        if options.tokenizer == "sentencepiece":
            if stamps.get("tokenizer") != keys["tokenizer"] or not (out / tk.SP_MODEL).exists():
                stamps.pop("ids", None)
                with _timed(out, "tokenizer"):
                    _train_sentencepiece(out, lang, rules, options, stats, workers)
                stamps["tokenizer"] = keys["tokenizer"]
                _write_stamps(out, stamps)
            else:
                log.info("tokenizer %s is up to date", out / tk.SP_MODEL)
            if stamps.get("ids") != keys["ids"]:
                with _timed(out, "encode"):
                    counts = _encode_sentencepiece(out, lang, rules, options, stats, workers)
                stamps["ids"] = keys["ids"]
                _write_stamps(out, stamps)
            else:
                counts = stats["encoded"]
        elif stamps.get("ids") != keys["ids"] or stamps.get("tokenizer") != keys["tokenizer"]:
            with _timed(out, "encode"):
                counts = _encode_words(out, lang, rules, options, workers)
            stamps.update(tokenizer=keys["tokenizer"], ids=keys["ids"])
            _write_stamps(out, stamps)
        else:
            counts = stats["encoded"]

        stats = json.loads((out / "text" / "stats.json").read_text(encoding="utf-8"))
        meta = _meta(out, lang, source, options, rules, stats, counts)
        write_json(meta_path, meta)
    except BaseException:
        if created and "extract" not in stamps:
            shutil.rmtree(out, ignore_errors=True)
        raise
    log.info("corpus ready in %s: %s train / %s valid tokens", out, f"{meta['tokens']['train']:,}",
             f"{meta['tokens']['valid']:,}")
    return meta


# --- stage 1: source → cleaned text ---------------------------------------------------------------------------

def _clean_batch(batch: Batch) -> list[tuple[str | None, str]]:
    results = []
    for title, text, markup in batch.docs:
        if markup == "wikitext":
            results.append(clean_wikitext(title, text, batch.config))
        else:
            results.append(tidy_plain(title, text, batch.config.min_chars))
    return results


def _extract(source: Source, text_dir: Path, valid_frac: float, workers: int) -> None:
    text_dir.mkdir(parents=True, exist_ok=True)
    tmp = {s: text_dir / f"{s}.txt.gz.tmp" for s in SPLITS}
    articles, chars, lines = Counter(), Counter(), Counter()
    statuses: Counter = Counter()
    files = {s: gzip.open(tmp[s], "wt", encoding="utf-8", compresslevel=3) for s in SPLITS}
    held: str | None = None  # the last train article, kept back in case the valid split ends up empty

    def write(split: str, doc: str) -> None:
        files[split].write(doc + "\n\n")
        articles[split] += 1
        chars[split] += len(doc)
        lines[split] += doc.count("\n") + 1

    try:
        for results in ordered_map(_clean_batch, source.batches(BATCH_DOCS), workers):
            for doc, status in results:
                statuses[status] += 1
                if doc is None:
                    continue
                if unit_hash(doc_key(doc), "split") < valid_frac:
                    write("valid", doc)
                else:
                    if held is not None:
                        write("train", held)
                    held = doc
        if held is not None:
            write("valid" if valid_frac > 0 and articles["valid"] == 0 and articles["train"] > 0 else "train", held)
    finally:
        for f in files.values():
            f.close()
    skipped = {**source.skipped, **{k: v for k, v in statuses.items() if k != "ok"}}
    if articles["train"] == 0:
        raise UlmfitError(
            f"the source has no articles to train on (skipped: {_fmt_counts(skipped) or 'nothing read'}); "
            "check that it is the right file, or lower --min-chars."
        )
    if articles["valid"] == 0:
        log.warning("the valid split is empty (%d article in all); validation needs a larger source",
                    articles["train"])
    for s in SPLITS:
        os.replace(tmp[s], text_dir / f"{s}.txt.gz")
    stats = {"articles": dict(articles), "chars": dict(chars), "lines": dict(lines), "skipped": skipped,
             "source": source.describe()}
    for s in SPLITS:
        for counter in (stats["articles"], stats["chars"], stats["lines"]):
            counter.setdefault(s, 0)
    write_json(text_dir / "stats.json", stats)
    log.info("cleaned %d articles (%d train, %d valid); skipped %s", articles.total(), articles["train"],
             articles["valid"], _fmt_counts(skipped) or "nothing")


def read_docs(text_dir: Path, split: str) -> Iterator[str]:
    """The cleaned articles of one split, in order."""
    with gzip.open(text_dir / f"{split}.txt.gz", "rt", encoding="utf-8") as f:
        yield from _blocks(f)


def doc_key(doc: str) -> str:
    """What splits and samples hash: the first line, which is the title for Wikipedia articles."""
    return doc.split("\n", 1)[0]


def unit_hash(key: str, salt: str) -> float:
    """A number in [0, 1) fixed by `key`: the same article lands in the same split on every run and machine."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8, person=salt.encode()[:16]).digest()
    return int.from_bytes(digest, "big") / 2**64


# --- stage 2 and 3, SentencePiece -----------------------------------------------------------------------------

def _train_sentencepiece(out: Path, lang: Language, rules: list[str], options: PrepareOptions, stats: dict,
                         workers: int) -> None:
    preprocess = make_preprocessor(lang, rules)
    keep = min(1.0, 1.2 * options.sp_sentences / max(1, stats["lines"]["train"]))
    rng = random.Random(0)

    def lines() -> Iterator[str]:
        for doc in read_docs(out / "text", "train"):
            for line in doc.split("\n"):
                if keep >= 1 or rng.random() < keep:
                    yield preprocess(line)

    work = out / ".spm-tmp"
    shutil.rmtree(work, ignore_errors=True)
    log.info("training a SentencePiece unigram model (vocabulary up to %d) on %s", options.vocab_size,
             f"{min(stats['lines']['train'], options.sp_sentences):,} lines")
    model = tk.train_sentencepiece(lines(), work, options.vocab_size, lang.sp_coverage, workers,
                                   options.sp_sentences)
    os.replace(model, out / tk.SP_MODEL)
    shutil.rmtree(work, ignore_errors=True)


_ENCODER = None


def _init_encoder(kind: str, model: str | None, lang_code: str, rules: list[str]) -> None:
    global _ENCODER
    lang = get_lang(lang_code)
    _ENCODER = tk.SentencePieceEncoder(Path(model), lang, rules) if kind == "sentencepiece" \
        else tk.WordTokenizer(lang, rules)


def _encode_batch(docs: list[str]) -> list:
    return _ENCODER(docs)


def _batches(items: Iterator, keep: float = 1.0, key=doc_key) -> Iterator[list]:
    """Group items into batches, leaving out those whose sample hash falls at or above `keep`."""
    batch: list = []
    for item in items:
        if keep < 1 and unit_hash(key(item), "sample") >= keep:
            continue
        batch.append(item)
        if len(batch) >= BATCH_DOCS:
            yield batch
            batch = []
    if batch:
        yield batch


def _encode_sentencepiece(out: Path, lang: Language, rules: list[str], options: PrepareOptions, stats: dict,
                          workers: int) -> dict:
    encoder = tk.SentencePieceEncoder(out / tk.SP_MODEL, lang, rules)
    keep = 1.0
    if options.max_tokens:  # estimate tokens per character on the first 2M characters of train text
        sample, n = [], 0
        for doc in read_docs(out / "text", "train"):
            sample.append(doc)
            n += len(doc)
            if n > 2_000_000:
                break
        per_char = sum(len(ids) + 1 for ids in encoder(sample)) / max(1, n)
        keep = min(1.0, 1.05 * options.max_tokens / max(1.0, per_char * stats["chars"]["train"]))
    initargs = ("sentencepiece", str(out / tk.SP_MODEL), lang.code, rules)

    def encoded(split: str) -> Iterator[list[list[int]]]:
        return ordered_map(_encode_batch, _batches(read_docs(out / "text", split), keep), workers,
                           initializer=_init_encoder, initargs=initargs)

    return _write_ids(out, stats, encoded, options.max_tokens, len(encoder), keep)


def _write_ids(out: Path, stats: dict, encoded, max_tokens: int | None, vocab_size: int, keep: float) -> dict:
    """Write `{split}.bin` from `encoded(split)`, batches of id lists; stop the train split before it passes
    `max_tokens`."""
    dtype = tk.ids_dtype(vocab_size)
    counts = {"articles": {}, "tokens": {}, "sample_rate": keep, "vocab_size": vocab_size, "dtype": dtype.name}
    for split in SPLITS:
        tmp = out / f"{split}.bin.tmp"
        n_docs = n_tokens = 0
        room = max_tokens if split == "train" and max_tokens else None
        with open(tmp, "wb") as f, tqdm(total=stats["articles"][split], desc=f"encoding {split}",
                                         unit=" articles", disable=None) as bar:
            for batch in encoded(split):
                bar.update(len(batch))
                if room is not None:
                    sizes = np.cumsum([len(ids) + 1 for ids in batch])
                    fits = int(np.searchsorted(sizes, room, side="right"))
                    batch, room = batch[:fits], room - (int(sizes[fits - 1]) if fits else 0)
                arr = tk.with_bos(batch, dtype)
                f.write(arr.tobytes())
                n_docs += len(batch)
                n_tokens += len(arr)
                if room is not None and fits < len(sizes):
                    break
        if split == "train" and n_docs == 0:
            tmp.unlink()
            raise UlmfitError(f"no article fits in --max-tokens {max_tokens:,}; raise it.")
        os.replace(tmp, out / f"{split}.bin")
        counts["articles"][split], counts["tokens"][split] = n_docs, n_tokens
    _update_stats(out, encoded=counts)
    return counts


# --- stage 2 and 3, words ------------------------------------------------------------------------------------

def _encode_words(out: Path, lang: Language, rules: list[str], options: PrepareOptions, workers: int) -> dict:
    """Tokenize both splits once into temporary files, build the vocabulary from the train counts, then map."""
    stats = json.loads((out / "text" / "stats.json").read_text(encoding="utf-8"))
    tok_dir = out / ".tokens-tmp"
    tok_dir.mkdir(exist_ok=True)
    counts: Counter = Counter()
    total = 0
    for split in SPLITS:
        with gzip.open(tok_dir / f"{split}.jsonl.gz", "wt", encoding="utf-8", compresslevel=1) as f, \
                tqdm(total=stats["articles"][split], desc=f"tokenizing {split}", unit=" articles",
                     disable=None) as bar:
            for batch in ordered_map(_encode_batch, _batches(read_docs(out / "text", split)), workers,
                                     initializer=_init_encoder, initargs=("word", None, lang.code, rules)):
                for toks in batch:
                    f.write(json.dumps(toks, ensure_ascii=False) + "\n")
                    if split == "train":
                        counts.update(toks)
                        total += len(toks) + 1
                bar.update(len(batch))
    itos = tk.build_word_vocab(counts, options.vocab_size, options.min_freq)
    atomic_write_text(out / tk.WORD_VOCAB, json.dumps(itos, ensure_ascii=False))
    stoi = {t: i for i, t in enumerate(itos)}
    keep = min(1.0, options.max_tokens / total) if options.max_tokens else 1.0

    def encoded(split: str) -> Iterator[list[list[int]]]:
        # Articles are sampled by their title line, as on the SentencePiece path.
        with gzip.open(tok_dir / f"{split}.jsonl.gz", "rt", encoding="utf-8") as f:
            pairs = zip(map(doc_key, read_docs(out / "text", split)), f)
            for batch in _batches(pairs, keep, key=lambda pair: pair[0]):
                yield [[stoi.get(t, tk.UNK) for t in json.loads(line)] for _, line in batch]

    result = _write_ids(out, stats, encoded, options.max_tokens, len(itos), keep)
    shutil.rmtree(tok_dir, ignore_errors=True)
    return result


# --- bookkeeping ---------------------------------------------------------------------------------------------

def _meta(out: Path, lang: Language, source: Source, options: PrepareOptions, rules: list[str], stats: dict,
          counts: dict) -> dict:
    tok_file = out / (tk.SP_MODEL if options.tokenizer == "sentencepiece" else tk.WORD_VOCAB)
    return {
        "format": FORMAT,
        "format_version": 1,
        "lang": lang.code,
        "lang_name": lang.name,
        "generic_adapter": lang.generic,
        "source": stats["source"],
        "tokenizer": options.tokenizer,
        "tokenizer_file": tok_file.name,
        "tokenizer_hash": "sha256:" + file_digest(tok_file),
        "vocab_size": counts["vocab_size"],
        "dtype": counts["dtype"],
        "special_tokens": tk.SPECIAL_TOKENS,
        "rules": rules,
        "articles": counts["articles"],
        "tokens": counts["tokens"],
        "sample_rate": counts["sample_rate"],
        "cleaned": {"articles": stats["articles"], "chars": stats["chars"]},
        "skipped": stats["skipped"],
        "options": asdict(options) | {"rules": rules},
        "seconds": stats.get("seconds", {}),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "ulmfit_version": __version__,
    }


@contextlib.contextmanager
def _timed(out: Path, stage: str) -> Iterator[None]:
    """Record a finished stage's wall time in `text/stats.json` (it ends up in meta.json)."""
    start = time.perf_counter()
    yield
    seconds = json.loads((out / "text" / "stats.json").read_text(encoding="utf-8")).get("seconds", {})
    if stage == "extract":
        seconds = {}
    _update_stats(out, seconds=seconds | {stage: round(time.perf_counter() - start, 3)})


def _update_stats(out: Path, **fields) -> None:
    path = out / "text" / "stats.json"
    stats = json.loads(path.read_text(encoding="utf-8")) | fields
    write_json(path, stats)


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _fmt_counts(counts: dict) -> str:
    return ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in sorted(counts.items()) if v)


def _writable_dir(out: Path) -> bool:
    """Make `out` if needed and check that it takes files; True when this call created it."""
    created = not out.exists()
    if out.exists() and not out.is_dir():
        raise UlmfitError(f"output path {out} is a file; choose a directory for --out.")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise UlmfitError(f"cannot write to the output directory {out} ({e.strerror}); choose another --out.") from e
    return created


def _read_stamps(out: Path) -> dict:
    return read_json(out / STAGES_FILE) or {}


def _write_stamps(out: Path, stamps: dict) -> None:
    write_json(out / STAGES_FILE, stamps)
