"""Where articles come from: a MediaWiki dump, the Hub's `wikimedia/wikipedia`, or plain-text files.

Each source yields `Batch`es of work for the cleaning workers: raw documents, or, for a Wikipedia multistream
dump, a range of its bz2 streams that the worker decompresses and parses itself, so that reading the dump grows
with the number of workers. `identity()` says what, if it changed, makes the cleaned text stale.
"""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from tqdm.auto import tqdm

from ulmfit.batching import batched
from ulmfit.errors import UlmfitError
from ulmfit.files import open_compressed_text
from ulmfit.langs import Language
from ulmfit.langs.base import HF_WIKIPEDIA
from ulmfit.pretrain import multistream
from ulmfit.pretrain.clean import CleanConfig
from ulmfit.pretrain.corpus import blocks
from ulmfit.pretrain.dump import DumpInfo, DumpReader, Page

log = logging.getLogger(__name__)

# (title, text, markup) with markup "wikitext" or "plain": cheap to send to a worker process. A page that is no
# article travels as the reason it is skipped instead ("redirect", "other_namespace", "empty").
RawDoc = tuple[str, str, str]
TEXT_SUFFIXES = (".txt", ".txt.gz", ".txt.xz", ".txt.bz2", ".raw", ".tokens")


def article(page: Page) -> RawDoc | str:
    """A dump page as an article to clean, or why it is not one."""
    if page.ns != 0:
        return "other_namespace"
    if page.redirect:
        return "redirect"
    if not page.text.strip():
        return "empty"
    return page.title, page.text, "wikitext"


@dataclass
class Batch:
    """One worker's share of the work: `items` read by the main process, or `stream_range`, a range of a multistream
    dump that the worker reads itself (`pages` and `truncation` then say what it found)."""

    config: CleanConfig
    items: list[RawDoc | str] = field(default_factory=list)
    stream_range: multistream.StreamRange | None = None
    pages: int = 0
    truncation: str | None = None

    def articles(self) -> Iterator[RawDoc | str]:
        if self.stream_range is None:
            yield from self.items
            return
        reader = multistream.RangeReader(self.stream_range)
        yield from map(article, reader)
        self.pages = reader.info.pages
        self.truncation = reader.info.truncation if reader.info.truncated else None


@dataclass
class Source:
    lang: Language
    min_chars: int

    def batches(self, size: int) -> Iterator[Batch]:
        raise NotImplementedError

    def done(self, batch: Batch) -> None:
        """Account for a batch a worker has finished (multistream dumps count their pages this way)."""

    def identity(self) -> dict:
        raise NotImplementedError

    def describe(self) -> dict:
        return self.identity()


def _file_identity(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


@dataclass
class DumpSource(Source):
    path: Path = Path()
    url: str | None = None
    sample: bool = False  # one of the sample dumps shipped with the package
    force_lang: bool = False  # read a dump of another Wikipedia than the language's
    info: DumpInfo | None = None
    _bar: tqdm | None = None

    def identity(self) -> dict:
        return {"type": "wikipedia-dump", **_file_identity(self.path)}

    def describe(self) -> dict:
        info = self.info
        return {
            "type": "wikipedia-dump",
            "path": str(self.path.resolve()),
            "url": self.url,
            **({"sample": True} if self.sample else {}),
            "dbname": info.dbname if info else None,
            "dump_date": info.dump_date if info else None,
            "pages": info.pages if info else None,
            "truncated": info.truncated if info else None,
        }

    def batches(self, size: int) -> Iterator[Batch]:
        total = self.path.stat().st_size
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"reading {self.path.name}", disable=None) as bar:
            self._bar = bar
            ranges = multistream.plan(self.path, target_bytes=multistream.TARGET_BYTES)
            if ranges is not None:
                self.info = ranges.info
                config = self._config()
                for item in ranges.ranges:
                    yield Batch(config, stream_range=item)
                return
            reader = DumpReader(self.path, progress=bar.update)
            self.info = reader.info
            pages = iter(reader)
            first = next(pages, None)  # the siteinfo comes before it: the namespaces are known now
            if first is None:
                return
            config = self._config()
            for items in batched(map(article, itertools.chain([first], pages)), size):
                yield Batch(config, items)

    def done(self, batch: Batch) -> None:
        if batch.stream_range is None:
            return
        self.info.pages += batch.pages
        if batch.truncation and not self.info.truncated:
            self.info.truncated, self.info.truncation = True, batch.truncation
        self._bar.update(batch.stream_range.end - batch.stream_range.start)

    def _config(self) -> CleanConfig:
        """The cleaning config from the dump's siteinfo, after checking that it is the language's Wikipedia."""
        dbname = self.info.dbname
        if dbname and dbname != self.lang.wiki:
            if not self.force_lang:
                raise UlmfitError(f"{self.path.name} is a dump of {dbname}, not of {self.lang.wiki} "
                                  f"({self.lang.name}); give the language of the dump, or --force-lang to read it "
                                  f"as {self.lang.code}.")
            log.warning("%s is a dump of %s, read as %s (%s) as --force-lang asks", self.path.name, dbname,
                        self.lang.code, self.lang.wiki)
        return CleanConfig.for_dump(self.info.namespaces, self.lang.disambiguation, self.min_chars)


@dataclass
class HubSource(Source):
    """`wikimedia/wikipedia` (or another dataset with `title` and `text` columns, or a local folder of one)."""

    dataset: str = HF_WIKIPEDIA
    config_name: str | None = None

    def identity(self) -> dict:
        local = Path(self.dataset)
        if local.exists():
            files = sorted(p for p in local.rglob("*") if p.is_file())
            return {"type": "hf-dataset", "path": str(local.resolve()), "files": [_file_identity(p) for p in files]}
        return {"type": "hf-dataset", "dataset": self.dataset, "config": self.config_name}

    def batches(self, size: int) -> Iterator[Batch]:
        import datasets

        local = Path(self.dataset).exists()
        try:
            rows = datasets.load_dataset(self.dataset, None if local else self.config_name,
                                         split="train", streaming=True)
        except Exception as e:
            raise UlmfitError(
                f"cannot load the dataset {self.dataset} ({self.config_name}): {str(e).splitlines()[0]}; "
                "without network use a local dump with --dump PATH, or set HF_HUB_OFFLINE=1 to use the cache."
            ) from e
        config = CleanConfig.for_dump({}, (), self.min_chars)
        for docs in batched(self._rows(rows), size):
            yield Batch(config, docs)

    def _rows(self, rows) -> Iterator[RawDoc]:
        for row in tqdm(rows, desc=f"reading {self.dataset}", unit=" articles", disable=None):
            if "text" not in row:
                raise UlmfitError(f"the dataset {self.dataset} has no `text` column (its columns: {sorted(row)}).")
            yield row.get("title") or "", row["text"], "plain"


@dataclass
class TextSource(Source):
    """Plain-text files: one document per block of lines, blocks separated by blank lines."""

    paths: list[Path] = field(default_factory=list)

    def identity(self) -> dict:
        return {"type": "text", "files": [_file_identity(p) for p in self.files()]}

    def files(self) -> list[Path]:
        found: list[Path] = []
        for path in self.paths:
            if path.is_dir():
                found += sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(TEXT_SUFFIXES))
            elif path.is_file():
                found.append(path)
            else:
                raise UlmfitError(f"text file {path} does not exist; check the path given to --text.")
        if not found:
            raise UlmfitError(f"no text files ({', '.join(TEXT_SUFFIXES)}) under {', '.join(map(str, self.paths))}.")
        return found

    def batches(self, size: int) -> Iterator[Batch]:
        config = CleanConfig.for_dump({}, (), self.min_chars)
        for docs in batched(self._blocks(), size):
            yield Batch(config, docs)

    def _blocks(self) -> Iterator[RawDoc]:
        for path in tqdm(self.files(), desc="reading text files", unit=" files", disable=None):
            with open_compressed_text(path, errors="replace") as f:
                for block in blocks(f):
                    yield "", block, "plain"
