"""Where articles come from: a MediaWiki dump, the Hub's `wikimedia/wikipedia`, or plain-text files.

Each source yields batches of raw documents for the cleaning workers and keeps counts of what it skipped;
`identity()` says what, if it changed, makes the cleaned text stale.
"""
from __future__ import annotations

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
from ulmfit.pretrain.clean import CleanConfig
from ulmfit.pretrain.corpus import blocks
from ulmfit.pretrain.dump import DumpReader

log = logging.getLogger(__name__)

# (title, text, markup) with markup "wikitext" or "plain": cheap to send to a worker process.
RawDoc = tuple[str, str, str]
TEXT_SUFFIXES = (".txt", ".txt.gz", ".txt.xz", ".txt.bz2", ".raw", ".tokens")


@dataclass
class Batch:
    docs: list[RawDoc]
    config: CleanConfig


@dataclass
class Source:
    lang: Language
    min_chars: int
    skipped: dict[str, int] = field(default_factory=dict)

    def _skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def batches(self, size: int) -> Iterator[Batch]:
        raise NotImplementedError

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
    reader: DumpReader | None = None
    config: CleanConfig | None = None  # from the dump's siteinfo, read before the first page

    def identity(self) -> dict:
        return {"type": "wikipedia-dump", **_file_identity(self.path)}

    def describe(self) -> dict:
        info = self.reader.info if self.reader else None
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
            self.reader = DumpReader(self.path, progress=bar.update)
            for docs in batched(self._articles(), size):
                yield Batch(docs, self.config)

    def _articles(self) -> Iterator[RawDoc]:
        """The namespace-0 pages with text that are not redirects."""
        for page in self.reader:
            if self.config is None:
                self.config = CleanConfig.for_dump(self.reader.info.namespaces, self.lang.disambiguation,
                                                   self.min_chars)
                self._check_language()
            if page.ns != 0:
                self._skip("other_namespace")
            elif page.redirect:
                self._skip("redirect")
            elif not page.text.strip():
                self._skip("empty")
            else:
                yield page.title, page.text, "wikitext"

    def _check_language(self) -> None:
        dbname = self.reader.info.dbname
        if dbname and dbname != self.lang.wiki:
            log.warning("%s is a dump of %s, but the language asked for is %s (%s)",
                        self.path.name, dbname, self.lang.code, self.lang.wiki)


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
            yield Batch(docs, config)

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
            yield Batch(docs, config)

    def _blocks(self) -> Iterator[RawDoc]:
        for path in tqdm(self.files(), desc="reading text files", unit=" files", disable=None):
            with open_compressed_text(path, errors="replace") as f:
                for block in blocks(f):
                    yield "", block, "plain"
