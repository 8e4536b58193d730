"""Streaming reader for MediaWiki XML dumps (`pages-articles`), compressed or not, whole or cut off.

The reader feeds raw bytes to expat through `xml.etree.ElementTree.XMLPullParser`, so the encoding comes from
the XML declaration or byte-order mark (UTF-16 dumps work), and it drops each `<page>` element as soon as it has
been read, so memory stays flat whatever the dump's size. A dump that ends early (cut mid-page, never closed,
a broken last character or a truncated compressed stream) yields every complete page and records the
truncation instead of failing.
"""
from __future__ import annotations

import logging
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from ulmfit.errors import UlmfitError
from ulmfit.files import DECOMPRESSION_ERRORS, open_compressed

log = logging.getLogger(__name__)

CHUNK = 1 << 20
_DATE = re.compile(r"-(\d{8}|latest)-")


@dataclass
class Page:
    """One `<page>` of the dump, as stored: wikitext, not yet cleaned."""

    title: str
    ns: int
    text: str
    redirect: bool


@dataclass
class DumpInfo:
    """What the reader learned about the dump besides its pages."""

    path: Path
    dbname: str | None = None
    xml_lang: str | None = None
    namespaces: dict[int, str] = field(default_factory=dict)
    pages: int = 0
    truncated: bool = False
    truncation: str = ""

    @property
    def dump_date(self) -> str | None:
        """The dump's date as its file name gives it (`20230501` or `latest`), where it does."""
        m = _DATE.search(self.path.name)
        return m.group(1) if m else None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


class DumpReader:
    """Iterate over the pages of a MediaWiki XML dump; `info` fills in as reading goes on.

    `progress` is called with the number of (compressed) bytes read from the file since the last call.
    """

    def __init__(self, path: Path | str, progress: Callable[[int], None] | None = None):
        self.path = Path(path)
        self.info = DumpInfo(path=self.path)
        self._progress = progress
        if not self.path.is_file():
            raise UlmfitError(f"dump file {self.path} does not exist; check the path given to --dump.")
        if self.path.stat().st_size == 0:
            raise UlmfitError(f"dump file {self.path} is empty; download it again or pick another file.")

    def __iter__(self) -> Iterator[Page]:
        with open_compressed(self.path) as stream:
            yield from self._parse(stream)

    def _chunks(self, stream: BinaryIO) -> Iterator[bytes]:
        done = 0
        while True:
            try:
                chunk = stream.read1(CHUNK)  # read1: what has been decoded so far survives a cut-off stream
            except EOFError:
                self._truncated("its compressed stream ends early")
                return
            except DECOMPRESSION_ERRORS as e:
                if self.info.pages == 0:
                    raise UlmfitError(f"{self.path} cannot be decompressed ({e}); is it a complete download?") from e
                self._truncated(f"its compressed stream is damaged ({e})")
                return
            if self._progress is not None:
                pos = os.lseek(stream.fileno(), 0, os.SEEK_CUR)  # bytes of the file on disk read so far
                self._progress(pos - done)
                done = pos
            if not chunk:
                return
            yield chunk

    def _truncated(self, why: str) -> None:
        if not self.info.truncated:
            self.info.truncated, self.info.truncation = True, why

    def _parse(self, stream: BinaryIO) -> Iterator[Page]:
        parser = PageParser(self.info)
        try:
            for chunk in self._chunks(stream):
                yield from parser.feed(chunk)
            parser.close()
        except ET.ParseError as e:
            if parser.root is None and self.info.truncated:
                raise UlmfitError(
                    f"{self.path} breaks off before its first page ({self.info.truncation}); "
                    "the file is incomplete: download it again."
                ) from e
            if parser.root is None:
                raise UlmfitError(
                    f"{self.path} is not a MediaWiki XML dump ({e}); pass a `pages-articles` .xml or .xml.bz2 file."
                ) from e
            self._truncated(PageParser.cut_reason(e))
        if parser.root is None:
            raise UlmfitError(f"{self.path} holds no XML; pass a MediaWiki `pages-articles` dump.")
        if self.info.truncated:
            log.warning("%s is truncated (%s): kept the %d complete pages before the cut",
                        self.path.name, self.info.truncation, self.info.pages)


class PageParser:
    """The dump's XML fed in pieces of bytes: the `<mediawiki>` root and `<siteinfo>` fill in `info`, and each
    `<page>` comes out of `feed` as soon as it is complete.

    `DumpReader` feeds it a whole file; `multistream.RangeReader` feeds it the header stream of a multistream dump,
    then the `<page>` elements of a range of streams, without closing it. `depth` counts the elements open, so
    `depth == 1` after a feed means it ended between pages.
    """

    def __init__(self, info: DumpInfo):
        self.info = info
        self.root: ET.Element | None = None
        self.depth = 0
        self._parser = ET.XMLPullParser(events=("start", "end"))
        self._in_siteinfo = False

    def feed(self, data: bytes) -> list[Page]:
        """Parse `data`; the pages it completes. Raises `ET.ParseError` where the XML is broken."""
        self._parser.feed(data)
        pages = []
        for event, elem in self._parser.read_events():
            self.depth += 1 if event == "start" else -1
            tag = _local(elem.tag)
            if self.root is None:
                self.root = elem
                if tag != "mediawiki":
                    raise UlmfitError(
                        f"{self.info.path} is XML but not a MediaWiki dump (its root element is <{tag}>, "
                        "not <mediawiki>); pass a `pages-articles` dump."
                    )
                self.info.xml_lang = elem.get("{http://www.w3.org/XML/1998/namespace}lang")
                continue
            if event == "start":
                self._in_siteinfo = self._in_siteinfo or tag == "siteinfo"
                continue
            if self._in_siteinfo:
                if tag == "dbname":
                    self.info.dbname = (elem.text or "").strip() or None
                elif tag == "namespace":
                    self.info.namespaces[int(elem.get("key", "0"))] = (elem.text or "").strip()
                elif tag == "siteinfo":
                    self._in_siteinfo = False
                    self.root.clear()
            elif tag == "page":
                page = self._page(elem)
                self.root.clear()  # the page is read: let it go
                if page is not None:
                    self.info.pages += 1
                    pages.append(page)
        return pages

    def close(self) -> None:
        """The XML ends here. Raises `ET.ParseError` when it is not complete (`cut_reason` says why)."""
        self._parser.close()

    @staticmethod
    def cut_reason(e: ET.ParseError) -> str:
        """Why the XML is cut off, for `DumpInfo.truncation`, from the error that `feed` or `close` raised."""
        if "no element found" in str(e):
            return "its XML ends before the closing </mediawiki>"
        return f"its XML breaks off ({e})"

    @staticmethod
    def _page(elem: ET.Element) -> Page | None:
        title = ns = text = None
        redirect = False
        for child in elem.iter():
            tag = _local(child.tag)
            if tag == "title":
                title = child.text or ""
            elif tag == "ns":
                ns = int(child.text or "0")
            elif tag == "redirect":
                redirect = True
            elif tag == "text":
                text = child.text
        if title is None:
            return None
        if ns is None:  # very old dumps have no <ns>: a prefix names the namespace
            ns = 0
        return Page(title=title, ns=ns, text=text or "", redirect=redirect)
