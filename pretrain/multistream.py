"""Wikipedia's multistream bz2 dumps read in parallel: each worker decompresses and parses its own byte range.

`LANGwiki-DATE-pages-articles-multistream.xml.bz2` is a concatenation of independent bz2 streams: the first holds
the `<mediawiki>` opening tag and `<siteinfo>`, each later one 100 `<page>` elements, the last `</mediawiki>`.
Beside it, `...-multistream-index.txt.bz2` has a line `OFFSET:PAGE_ID:TITLE` per page, OFFSET being where the
page's stream starts in the .bz2 file. Usage:

    plan = multistream.plan(path)          # None: not a multistream dump, so read it with DumpReader as before
    if plan is not None:
        info, ranges = plan                # info: dbname, namespaces, xml_lang (from the first stream)
        for item in ranges:                # small picklable StreamRanges, one per worker task, in file order
            reader = RangeReader(item)     # in a worker: iterate for the Pages, then look at reader.info
            pages = list(reader)           # reader.info.pages, .truncated, .truncation: this range's share

The pages of all ranges, in range order, are the pages `DumpReader(path)` yields, page for page: each range is
parsed by the same `PageParser`, fed the first stream (the `<mediawiki>` root, so the encoding and namespaces are
the dump's) and then the range's streams. Add up `reader.info.pages`; only the last range can be `truncated`.

Stream starts come from the index (given, or found beside the dump under Wikipedia's name), checked before use,
or from a scan of the file for stream headers. A header (`BZh1`-`BZh9` + the block magic `1AY&SY`) counts only
where the 11 bytes before it end with the end-of-stream marker of the stream before (a 48-bit magic and a CRC,
padded to a byte): compressed data or junk that happens to contain the header bytes is no stream start.

Faults. A dump cut off in its last stream (an unfinished download) yields every complete page and records the
truncation in `reader.info`, as `DumpReader` does. A damaged stream (a decompression error), or one that runs past
the start of the next range, is a `UlmfitError` naming the byte offset, in whichever range it is. Skipping such a
stream would hide 100 missing articles behind a warning in a corpus whose metadata names the whole dump, and the
file cannot be what Wikipedia published (the downloader checks its sha1): downloading it again is the fix. The
same check catches a scan that took a range boundary where there is no stream start, so a mistaken boundary can
stop a run but never mix wrong pages into it.
"""
from __future__ import annotations

import bz2
import io
import logging
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

from ulmfit.errors import UlmfitError
from ulmfit.files import open_compressed
from ulmfit.pretrain.dump import DumpInfo, Page, PageParser

log = logging.getLogger(__name__)

TARGET_BYTES = 4 << 20  # compressed bytes per range: ~20 MB of XML, under a second of work for one core
SCAN_CHUNK = 8 << 20
FEED = 64 << 10  # compressed bytes given to a decompressor at a time
HEADER_MAX = 1 << 20  # a first stream longer than this is no multistream header (siteinfo is a few kB)

_BLOCK_MAGIC = b"1AY&SY"  # the first block of a stream starts right after its 4-byte header `BZh` + level
_END_MAGIC = 0x177245385090  # 48 bits that close a bz2 stream, followed by its 32-bit CRC
_FOOTER = 11  # bytes that hold the end marker, the CRC and 0 to 7 padding bits
_INDEX_SUFFIX = ("-multistream.xml.bz2", "-multistream-index.txt.bz2")


class StreamRange(NamedTuple):
    """Bytes `[start, end)` of a multistream dump: whole streams, parsed after the first stream `[0, header_end)`."""

    path: Path
    start: int
    end: int
    header_end: int
    last: bool


class Plan(NamedTuple):
    """What the first stream says about the dump (no pages counted yet), and the ranges to read, in file order."""

    info: DumpInfo
    ranges: list[StreamRange]


def plan(path: Path | str, index: Path | str | None = None, target_bytes: int = TARGET_BYTES,
         progress: Callable[[int], None] | None = None) -> Plan | None:
    """The dump's info and its streams grouped into ranges of about `target_bytes`, or None when `path` is not a
    multistream dump (xz, gzip, plain XML, a single bz2 stream, a first stream that holds pages).

    `index`: the `-multistream-index.txt.bz2`; when None, the one beside the dump is used if there is one, else the
    file is scanned (`progress` gets the bytes scanned as it goes).
    """
    path = Path(path)
    found = _header(path)
    if found is None:
        if index is not None:
            raise UlmfitError(f"{path} is not a multistream bz2 dump, so it has no index; leave out the index {index}.")
        return None
    info, header_end = found
    index = Path(index) if index is not None else index_beside(path)
    if index is not None:
        starts = index_stream_starts(index, path, header_end)
        how = f"index {index.name}"
    else:
        starts = scan_stream_starts(path, progress=progress)
        how = "a scan"
    starts = [s for s in starts if s > header_end]
    ranges = _group(path, starts, header_end, target_bytes)
    log.info("%s: %d streams after the header (from %s) in %d ranges", path.name, len(starts) + 1, how, len(ranges))
    return Plan(info, ranges)


def index_name(dump_name: str) -> str | None:
    """The name Wikipedia gives the index of a multistream dump (`X-multistream.xml.bz2` →
    `X-multistream-index.txt.bz2`), or None for a name that is not a multistream dump's."""
    dump_suffix, index_suffix = _INDEX_SUFFIX
    return dump_name[: -len(dump_suffix)] + index_suffix if dump_name.endswith(dump_suffix) else None


def index_beside(path: Path) -> Path | None:
    """`X-multistream-index.txt.bz2` beside `X-multistream.xml.bz2`, where it exists."""
    name = index_name(path.name)
    index = path.with_name(name) if name else None
    return index if index is not None and index.is_file() else None


def index_stream_starts(index: Path, dump: Path, header_end: int) -> list[int]:
    """The distinct stream offsets that `index` lists, each checked to be a stream start of `dump`, the first at
    `header_end` (where the first stream, `<siteinfo>`, ends)."""

    def bad(what: str) -> UlmfitError:
        return UlmfitError(f"{index} is not an index of {dump} ({what}); delete the index or download it again.")

    starts = _index_offsets(index, bad)
    size = dump.stat().st_size
    if starts[-1] >= size:
        raise UlmfitError(
            f"{index} lists a stream at byte {starts[-1]} but {dump} has {size} bytes: the dump is cut off or the "
            "index belongs to another dump; download the dump again, or delete the index to read what the dump holds."
        )
    if starts[0] != header_end:
        raise bad(f"its first stream is at byte {starts[0]}, the dump's first page stream at byte {header_end}")
    with open(dump, "rb") as f:
        for offset in starts:
            if not _is_stream_start(os.pread(f.fileno(), _FOOTER + 10, offset - _FOOTER), _FOOTER):
                raise bad(f"no bz2 stream starts at byte {offset}")
    return starts


def scan_stream_starts(path: Path, chunk: int = SCAN_CHUNK, progress: Callable[[int], None] | None = None) -> list[int]:
    """Offsets of the bz2 streams in `path`, found by their headers; reads `chunk` bytes at a time."""
    keep = _FOOTER + 4 + len(_BLOCK_MAGIC) - 1  # context of a header whose block magic straddles two chunks
    starts: list[int] = []
    buf, base, done = b"", 0, 0  # base: file offset of buf[0]; done: magics starting before it have been looked at
    with open(path, "rb") as f:
        while data := f.read(chunk):
            if progress is not None:
                progress(len(data))
            base += max(len(buf) - keep, 0)
            buf = buf[-keep:] + data
            i = buf.find(_BLOCK_MAGIC, done - base)
            while i >= 0:
                start = base + i - 4
                if start == 0 or (start >= _FOOTER and _is_stream_start(buf[i - 4 - _FOOTER: i + 6], _FOOTER)):
                    starts.append(start)
                i = buf.find(_BLOCK_MAGIC, i + 1)
            done = base + len(buf) - len(_BLOCK_MAGIC) + 1
    return starts


class RangeReader:
    """The pages of one `StreamRange`, as `DumpReader` yields them; `info` counts them and records a cut-off end
    (only the last range of a dump can have one)."""

    def __init__(self, item: StreamRange):
        self.item = item
        self.info = DumpInfo(path=item.path)
        self._unfinished_at: int | None = None

    def __iter__(self) -> Iterator[Page]:
        item = self.item
        parser = PageParser(self.info)
        for piece in self._decompressed(0, item.header_end):
            parser.feed(piece)  # the <mediawiki> root and <siteinfo>: no pages
        try:
            for piece in self._decompressed(item.start, item.end):
                yield from parser.feed(piece)
            self._finish(parser)
        except ET.ParseError as e:
            if not item.last:
                raise UlmfitError(
                    f"the streams of {item.path} from byte {item.start} do not hold whole <page> elements ({e}); "
                    "it is not a Wikipedia multistream dump: read it in one process."
                ) from e
            self._truncated(PageParser.cut_reason(e))
        if self.info.truncated:
            log.warning("%s is truncated (%s): kept the %d complete pages of its last range (from byte %d)",
                        item.path.name, self.info.truncation, self.info.pages, item.start)

    def _finish(self, parser: PageParser) -> None:
        item = self.item
        if self._unfinished_at is not None:
            if not item.last:
                raise UlmfitError(
                    f"the bz2 stream at byte {self._unfinished_at} of {item.path} runs past byte {item.end}, where "
                    "the next stream should start; download the dump again, or give it its index if it was scanned."
                )
            self._truncated("its compressed stream ends early")
        if item.last:
            parser.close()
        elif parser.depth != 1:
            raise UlmfitError(
                f"the streams of {item.path} from byte {item.start} to {item.end} end inside a <page>; it is not a "
                "Wikipedia multistream dump: read it in one process."
            )

    def _truncated(self, why: str) -> None:
        if not self.info.truncated:
            self.info.truncated, self.info.truncation = True, why

    def _decompressed(self, start: int, end: int) -> Iterator[bytes]:
        """The bz2 streams in bytes `[start, end)`, decompressed piece by piece, one stream after the other.

        When the bytes end inside a stream, `_unfinished_at` is where that stream starts.
        """
        decomp, stream_at = None, start
        pos = read_to = start  # file offsets of data[0] and of the next byte to read
        data = b""
        with open(self.item.path, "rb") as f:
            f.seek(start)
            while True:
                if not data:
                    data = f.read(min(FEED, end - read_to))
                    read_to += len(data)
                    if not data:
                        break
                fresh = decomp is None
                if fresh:
                    decomp, stream_at = bz2.BZ2Decompressor(), pos
                try:
                    out = decomp.decompress(data)
                except OSError as e:
                    if fresh and self.item.last and stream_at > start:  # as bz2.BZ2File: trailing junk ends the file
                        log.warning("%s: ignored its last %d bytes, which are not a bz2 stream",
                                    self.item.path.name, end - stream_at)
                        decomp = None
                        break
                    raise UlmfitError(
                        f"the bz2 stream at byte {stream_at} of {self.item.path} is damaged ({e}); "
                        "download the dump again, or give it its index if it was scanned."
                    ) from e
                if decomp.eof:
                    pos += len(data) - len(decomp.unused_data)
                    data, decomp = decomp.unused_data, None
                else:
                    pos += len(data)
                    data = b""
                if out:
                    yield out
        self._unfinished_at = stream_at if decomp is not None else None


def _header(path: Path) -> tuple[DumpInfo, int] | None:
    """The info in the first bz2 stream of `path` and the offset where that stream ends, when it is a multistream
    header: the `<mediawiki>` root and `<siteinfo>`, no page, and more streams after it."""
    with open(path, "rb") as f:
        if f.read(3) != b"BZh":
            return None
        f.seek(0)
        decomp, out = bz2.BZ2Decompressor(), []
        used = 0
        while not decomp.eof and used < HEADER_MAX and (data := f.read(FEED)):
            try:
                out.append(decomp.decompress(data))
            except OSError:
                return None  # DumpReader says what is wrong with it
            used += len(data) - (len(decomp.unused_data) if decomp.eof else 0)
    size = path.stat().st_size
    if not decomp.eof or used >= size:
        return None
    info = DumpInfo(path=path)
    parser = PageParser(info)
    try:
        parser.feed(b"".join(out))
    except (ET.ParseError, UlmfitError):
        return None  # not a MediaWiki dump: DumpReader says so
    if parser.root is None or parser.depth != 1 or info.pages:
        return None
    return info, used


def _index_offsets(index: Path, bad: Callable[[str], UlmfitError]) -> list[int]:
    """The distinct offsets of `index` in file order (each repeats on the lines of its stream's pages)."""
    starts: list[int] = []
    last = b""
    with io.BufferedReader(open_compressed(index), FEED) as f:  # its readline is C, BZ2File's is Python
        for n, line in enumerate(f, 1):
            head, colon, _ = line.partition(b":")
            if head == last:
                continue
            if not colon or not head.isdigit():
                raise bad(f"line {n} is not OFFSET:PAGE_ID:TITLE")
            offset = int(head)
            if starts and offset < starts[-1]:
                raise bad(f"its offsets go down at line {n}")
            starts.append(offset)
            last = head
    if not starts:
        raise bad("it is empty")
    return starts


def _is_stream_start(context: bytes, at: int) -> bool:
    """Whether a bz2 stream header starts at `context[at]` right after the end of another stream."""
    header = context[at: at + 10]
    if len(header) < 10 or not (header.startswith(b"BZh") and header[3:4].isdigit() and header[3:4] != b"0"
                                and header[4:] == _BLOCK_MAGIC):
        return False
    before = int.from_bytes(context[at - _FOOTER: at], "big")
    return any((before >> (32 + pad)) & 0xFFFFFFFFFFFF == _END_MAGIC for pad in range(8))


def _group(path: Path, starts: list[int], header_end: int, target_bytes: int) -> list[StreamRange]:
    """Ranges of consecutive streams from `header_end` to the end of the file, each of `target_bytes` or more
    (the last one may be smaller), cut only where a stream starts."""
    size = path.stat().st_size
    bounds = [header_end]
    for start in starts:
        if start - bounds[-1] >= target_bytes:
            bounds.append(start)
    bounds.append(size)
    return [StreamRange(path, a, b, header_end, b == size) for a, b in zip(bounds, bounds[1:])]
