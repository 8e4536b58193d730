"""The corpus directory (DESIGN.md): what `ulmfit prepare` writes and `ulmfit pretrain` reads. This module alone
knows its file names, reads and validates it, and writes it.

    train.bin, valid.bin     flat token ids (uint16, or uint32 for 65,536 ids or more), xxbos before each article
    spm.model | vocab.json   the tokenizer
    meta.json                language, source, tokenizer, counts, rules, options, seconds per stage (written last)
    text/train.txt.gz        the cleaned articles, one per blank-line-separated block, so that a new tokenizer
    text/valid.txt.gz        needs no new parse
    text/stats.json          what the cleaning stage counted, and what later stages added (their meta-to-be)
    .stages.json             the key of each finished stage, so that a re-run redoes only what an option changed

A folder without `meta.json` is not a finished corpus.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import os
import shutil
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ulmfit.errors import UlmfitError
from ulmfit.files import read_json, write_json
from ulmfit.langs import get_lang
from ulmfit.pretrain.tokenizer import TextTokenizer

FORMAT = "ulmfit-corpus"
FORMAT_VERSION = 1
SPLITS = ("train", "valid")
META = "meta.json"
STAGES = ".stages.json"
TEXT = "text"
STATS = "stats.json"


def blocks(lines: Iterable[str]) -> Iterator[str]:
    """Documents from lines: each block of non-blank lines is one document, blank lines separate them."""
    block: list[str] = []
    for line in lines:
        if line.strip():
            block.append(line.rstrip("\n"))
        elif block:
            yield "\n".join(block)
            block = []
    if block:
        yield "\n".join(block)


class Corpus:
    """A corpus directory. `Corpus.open(path)` is a finished one (its `meta` checked); `Corpus(path)` names the
    files of one being written."""

    def __init__(self, path: Path | str, meta: dict | None = None):
        self.path = Path(path)
        self.meta = meta

    @classmethod
    def open(cls, path: Path | str) -> Corpus:
        """A finished corpus of this format version, with its tokenizer file."""
        corpus = cls(path)
        missing = [f.name for f in (corpus.meta_file, *map(corpus.ids_file, SPLITS)) if not f.is_file()]
        if missing:
            raise UlmfitError(f"{corpus.path} is not a prepared corpus (missing {', '.join(missing)}); "
                              "run `ulmfit prepare` first.")
        meta = read_json(corpus.meta_file)
        if not isinstance(meta, dict) or not isinstance(meta.get("tokenizer_file"), str):
            raise UlmfitError(f"{corpus.meta_file} is damaged (not the JSON object `ulmfit prepare` writes); "
                              "prepare the corpus again.")
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise UlmfitError(f"{corpus.path} was written by an incompatible version (format "
                              f"{meta.get('format')!r} v{meta.get('format_version')}); prepare it again with this "
                              "version.")
        corpus.meta = meta
        if not corpus.tokenizer_file.is_file():
            raise UlmfitError(f"{corpus.path} lacks its tokenizer file {meta['tokenizer_file']}; prepare it again.")
        return corpus

    # --- names ---

    @property
    def meta_file(self) -> Path:
        return self.path / META

    @property
    def text_dir(self) -> Path:
        return self.path / TEXT

    def ids_file(self, split: str) -> Path:
        return self.path / f"{split}.bin"

    def text_file(self, split: str) -> Path:
        return self.text_dir / f"{split}.txt.gz"

    @property
    def tokenizer_file(self) -> Path:
        return self.path / Path(self.meta["tokenizer_file"]).name

    # --- a finished corpus ---

    def tokens(self, split: str) -> np.memmap:
        """The token ids of a split, memory-mapped (nothing is read until used)."""
        return np.memmap(self.ids_file(split), dtype=np.dtype(self.meta["dtype"]), mode="r")

    def tokenizer(self) -> TextTokenizer:
        return TextTokenizer(self.meta["tokenizer"], get_lang(self.meta["lang"]), self.meta["rules"],
                             self.tokenizer_file)

    def read_docs(self, split: str) -> Iterator[str]:
        """The cleaned articles of one split, in order."""
        with gzip.open(self.text_file(split), "rt", encoding="utf-8") as f:
            yield from blocks(f)

    # --- writing ---

    @contextlib.contextmanager
    def text_writer(self) -> Iterator[dict[str, io.TextIOBase]]:
        """One writable text file per split; they replace the old ones only when the block ends without error."""
        self.text_dir.mkdir(parents=True, exist_ok=True)
        tmp = {s: self.text_file(s).with_name(self.text_file(s).name + ".tmp") for s in SPLITS}
        # mtime=0: the same text gives the same bytes (a gzip header records the time otherwise)
        files = {s: io.TextIOWrapper(gzip.GzipFile(tmp[s], "wb", compresslevel=3, mtime=0), encoding="utf-8")
                 for s in SPLITS}
        try:
            yield files
        finally:
            for f in files.values():
                f.close()
        for s in SPLITS:
            os.replace(tmp[s], self.text_file(s))

    @contextlib.contextmanager
    def ids_writer(self, split: str) -> Iterator[io.BufferedWriter]:
        """The split's id file, open for writing; it replaces the old one only when the block ends without error."""
        final = self.ids_file(split)
        tmp = final.with_name(final.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                yield f
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, final)

    def write_doc(self, file: io.TextIOBase, doc: str) -> None:
        file.write(doc + "\n\n")

    def read_stats(self) -> dict | None:
        return read_json(self.text_dir / STATS)

    def write_stats(self, stats: dict) -> None:
        write_json(self.text_dir / STATS, stats)

    def read_stamps(self) -> dict:
        return read_json(self.path / STAGES) or {}

    def write_stamps(self, stamps: dict) -> None:
        write_json(self.path / STAGES, stamps)

    def link_files_from(self, other: Corpus) -> None:
        """Give this (new) directory the files of `other` but its `meta.json`, as hard links (copies where links
        fail): its stages can then start from `other`'s. Every writer here replaces files by renaming, so the
        links never change `other`."""
        for src in other.path.rglob("*"):
            if src.is_file() and src != other.meta_file:
                dest = self.path / src.relative_to(other.path)
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(src, dest)
                except OSError:
                    shutil.copy2(src, dest)

    def write_meta(self, meta: dict) -> None:
        """`meta.json`, written last: the corpus is now finished."""
        self.meta = {"format": FORMAT, "format_version": FORMAT_VERSION} | meta
        write_json(self.meta_file, self.meta)
