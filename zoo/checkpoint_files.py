"""Finding the files of one older checkpoint in what the user gives: a folder, a .tgz/.zip archive (unpacked into
a staging folder, refusing members that would land outside it), or a weights file with its vocabulary beside it;
which file is which direction, and which format and language they are."""
from __future__ import annotations

import json
import re
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from ulmfit.errors import UlmfitError
from ulmfit.langs import get_lang
from ulmfit.pretrain.tokenizer import SP_MODEL
from ulmfit.zoo.legacy_formats import FORMATS, LegacyFormat

ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".tar", ".zip")


@dataclass
class Checkpoint:
    """The files of one legacy checkpoint, found in a folder, an archive or beside a weights file."""

    format: LegacyFormat
    lang: str
    weights: dict[str, Path]  # direction -> .pth
    vocabs: dict[str, Path]  # direction -> itos (.pkl or .json)
    spm: Path | None
    inputs: dict[str, Path]  # name -> the files read (the archives, where there were some), for the record


def find_checkpoint(path: Path, staging: Path, format: str | None, lang: str | None) -> Checkpoint:
    files, archives = _gather(path, staging)
    weights, vocabs = _by_direction(files, _is_weights, path), _by_direction(files, _is_vocab, path)
    if not weights:
        raise UlmfitError(f"no weights file (.pth) in {path}; give the checkpoint's folder, archive or .pth file.")
    if not vocabs:
        raise UlmfitError(f"no vocabulary (itos*.pkl, *vocab.pkl or a JSON list) beside the weights in {path}.")
    for d in weights:
        if d not in vocabs:  # one vocabulary for both directions
            vocabs[d] = next(iter(vocabs.values()))
    spms = {name: f for name, f in files.items() if f.name == SP_MODEL}
    used = {name: f for name, f in files.items() if f in (*weights.values(), *vocabs.values(), *spms.values())}
    named = " ".join(used).lower()
    fmt = FORMATS[format or ("fastai-ulmfit" if spms else "thai2fit" if "thwiki" in named or lang == "th"
                             else "fastai-wt103" if re.search(r"wt103|lstm_(fwd|bwd)", named) else "fastai")]
    if fmt.tokenizer == "sentencepiece" and len(spms) != 1:
        raise UlmfitError(f"{fmt.name} needs exactly one spm.model in {path}, found {len(spms)}.")
    lang = lang or fmt.lang or _model_json_lang(files.values())
    if lang is None:
        raise UlmfitError(f"{path} does not say its language ({fmt.title}); give it with --lang, e.g. --lang de.")
    if fmt.name == "thai2fit" and lang != "th":
        raise UlmfitError(f"thai2fit is a Thai model; drop --lang {lang} or give another --format.")
    get_lang(lang)  # a clear error for an unknown code
    inputs = archives | ({} if archives else used)
    return Checkpoint(fmt, lang, weights, vocabs, next(iter(spms.values()), None), inputs)


def _gather(path: Path, staging: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """The candidate files by a name relative to what the user gave (archives unpacked into `staging`, their
    files named ARCHIVE-STEM/MEMBER), and the archives read."""
    if path.is_file() and not _is_archive(path):
        # A weights file: its vocabulary lies beside it, among whatever else that folder holds.
        beside = [f for f in sorted(path.parent.iterdir()) if f == path or (f.is_file() and not _is_weights(f))]
        return {f.name: f for f in beside}, {}
    found = [path] if path.is_file() else sorted(f for f in path.rglob("*") if f.is_file())
    files, archives = {}, {}
    for f in found:
        if not _is_archive(f):
            files[str(f.relative_to(path))] = f
            continue
        archives[f.name] = f
        dest = staging / f"{len(archives)}-{_stem(f)}"
        _unpack(f, dest)
        files |= {str(Path(_stem(f)) / m.relative_to(dest)): m for m in sorted(dest.rglob("*")) if m.is_file()}
    return files, archives


def _unpack(archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                z.extractall(dest)  # zipfile drops absolute paths and '..' from member names
        else:
            with tarfile.open(archive) as t:
                t.extractall(dest, filter="data")  # refuses links and paths that leave `dest`
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
        raise UlmfitError(f"{archive} is not a complete archive ({type(e).__name__}: {e}); it may be a partial or "
                          "corrupt download, so download it again.") from None


def _by_direction(files: dict[str, Path], want, where: Path) -> dict[str, Path]:
    """The one file per direction that `want` accepts; among several, those named itos/vocab/model are preferred."""
    found: dict[str, list[str]] = {}
    for name, f in files.items():
        if want(f):
            found.setdefault(_direction(name), []).append(name)
    chosen = {}
    for d, names in found.items():
        if len(names) > 1:
            names = [n for n in names if re.search(r"itos|vocab|model", Path(n).name.lower())] or names
        if len(names) > 1:
            raise UlmfitError(f"{where} holds several {d} candidates ({', '.join(names)}); give the folder or "
                              "file of the one checkpoint to convert.")
        chosen[d] = files[names[0]]
    return chosen


def _direction(name: str) -> str:
    """`bwd` for a file in a folder or with a name that says backward (wt103-bwd/, bwd/, lstm_bwd.pth), else `fwd`."""
    return "bwd" if any("bwd" in part.lower() or "backward" in part.lower() for part in Path(name).parts) else "fwd"


def _is_weights(f: Path) -> bool:
    return f.suffix == ".pth" and not f.stem.endswith("encoder")


def _is_vocab(f: Path) -> bool:
    name = f.name.lower()
    return f.suffix == ".pkl" or (f.suffix == ".json" and ("itos" in name or "vocab" in name))


def _is_archive(f: Path) -> bool:
    return f.name.lower().endswith(ARCHIVE_SUFFIXES)


def _stem(archive: Path) -> str:
    return next(archive.name[: -len(s)] for s in ARCHIVE_SUFFIXES if archive.name.lower().endswith(s))


def _model_json_lang(files) -> str | None:
    """The language a fastai_ulmfit `model.json` gives its tokenizer, if there is one."""
    for f in files:
        if f.name == "model.json":
            try:
                lang = json.loads(f.read_text(encoding="utf-8"))["tokenizer"]["params"]["lang"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if isinstance(lang, str):
                return lang
    return None
