"""Write a Wikipedia-style multistream dump of a chosen size, built from the real pages of a shared dump excerpt.

    python benchmarks/compare/make_multistream_dump.py --lang vi --xml-gb 2 --out /tmp/big

writes `/tmp/big/viwiki-20990101-pages-articles-multistream.xml.bz2` and its `...-multistream-index.txt.bz2`, laid
out as Wikipedia's: a first bz2 stream with the `<mediawiki>` tag and the source's `<siteinfo>`, then one stream per
100 pages, then one with `</mediawiki>`; the index has a line `OFFSET:PAGE_ID:TITLE` per page. The pages are those
of the language's dumps in `../shared/data/LANG/wikipedia_xml/` (or `--source PATH`), repeated until the XML
reaches the size asked for: each pass after the first renames its pages `Title (copy N)`, and page ids are fresh.
Streams are compressed in parallel (`--workers`, a bounded window, so memory stays flat); both files are written
under temporary names and renamed at the end. Progress goes to stderr, then a summary (pages, XML bytes,
compressed bytes, seconds). Tests import `write_dump` and `main` from here.
"""
from __future__ import annotations

import argparse
import bz2
import html
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Iterator

from ulmfit.files import open_compressed
from ulmfit.pretrain.parallel import default_workers, ordered_map

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PAGE = re.compile(r"<page>.*?</page>", re.S)
# A page split around its title's end and its id's digits: (up to the end of the title text, up to the id, the rest)
PAGE_PARTS = re.compile(r"(.*?<title>.*?)(</title>.*?<id>)\d+(</id>.*)", re.S)


def source_dumps(lang: str) -> list[Path]:
    """The shared dump excerpts of `lang`."""
    paths = sorted((SHARED_DATA / lang / "wikipedia_xml").glob("*"))
    if not paths:
        raise SystemExit(f"no dump of {lang!r} under {SHARED_DATA}; pass --source PATH")
    return paths


def load_pages(paths: list[Path]) -> tuple[str, list[tuple[str, str, str]]]:
    """The first dump's text up to `</siteinfo>`, and every complete page of the dumps, split into `PAGE_PARTS`."""
    header, pages = "", []
    for path in paths:
        with open_compressed(path) as f:
            raw = f.read()
        text = raw.decode("utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8", errors="replace")
        if not header:
            start, end = text.find("<mediawiki"), text.find("</siteinfo>")
            if start < 0 or end < 0:
                raise SystemExit(f"{path} has no <mediawiki> tag and <siteinfo>: is it a MediaWiki dump?")
            header = text[start: end + len("</siteinfo>")] + "\n"
        for page in PAGE.findall(text):
            parts = PAGE_PARTS.match(page)
            if parts:
                pages.append(parts.groups())
    if not pages:
        raise SystemExit(f"no complete <page> in {', '.join(map(str, paths))}")
    return header, pages


def _streams(pages: list[tuple[str, str, str]], header: str, xml_bytes: int,
             per_stream: int) -> Iterator[tuple[bytes, list[tuple[int, str]]]]:
    """The dump's streams as XML bytes, with the (page id, title) of their pages, until `xml_bytes` are out."""
    yield header.encode(), []
    total, page_id = len(header.encode()), 0
    while total < xml_bytes:
        parts, meta = [], []
        for _ in range(per_stream):
            before, middle, after = pages[page_id % len(pages)]
            copy = page_id // len(pages)
            title = before + (f" (copy {copy})" if copy else "")
            page_id += 1
            parts.append(f"  {title}{middle}{page_id}{after}\n")
            meta.append((page_id, html.unescape(title[title.rindex("<title>") + 7:])))
        data = "".join(parts).encode()
        total += len(data)
        yield data, meta
    yield b"</mediawiki>\n", []


def _compress(item: tuple[bytes, list]) -> tuple[bytes, int, list]:
    data, meta = item
    return bz2.compress(data, 9), len(data), meta


def write_dump(header: str, pages: list[tuple[str, str, str]], out: Path, prefix: str, xml_bytes: int,
               workers: int = 1, per_stream: int = 100, date: str = "20990101", verbose: bool = True) -> dict:
    """Write `PREFIX-DATE-pages-articles-multistream.xml.bz2` (at least `xml_bytes` of XML) and its index under
    `out`; the summary: paths, pages, XML bytes, compressed bytes, seconds."""
    out.mkdir(parents=True, exist_ok=True)
    dump = out / f"{prefix}-{date}-pages-articles-multistream.xml.bz2"
    index = out / f"{prefix}-{date}-pages-articles-multistream-index.txt.bz2"
    tmp_dump, tmp_index = dump.with_name(dump.name + ".tmp"), index.with_name(index.name + ".tmp")
    started = shown = time.perf_counter()
    offset = xml = n_pages = 0
    with open(tmp_dump, "wb") as f, bz2.open(tmp_index, "wt", encoding="utf-8") as idx:
        for data, size, meta in ordered_map(_compress, _streams(pages, header, xml_bytes, per_stream), workers):
            idx.writelines(f"{offset}:{page_id}:{title}\n" for page_id, title in meta)
            f.write(data)
            offset, xml, n_pages = offset + len(data), xml + size, n_pages + len(meta)
            if verbose and time.perf_counter() - shown > 0.5:
                shown = time.perf_counter()
                print(f"\r{xml / 1e6:,.0f} of {xml_bytes / 1e6:,.0f} MB of XML, {n_pages:,} pages, "
                      f"{offset / 1e6:,.0f} MB compressed, {xml / 1e6 / (shown - started):.1f} MB/s",
                      end="", file=sys.stderr, flush=True)
    os.replace(tmp_index, index)
    os.replace(tmp_dump, dump)
    if verbose:
        print(file=sys.stderr)
    return {"dump": str(dump), "index": str(index), "pages": n_pages, "xml_bytes": xml, "compressed_bytes": offset,
            "seconds": round(time.perf_counter() - started, 2), "workers": workers}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lang", help="language code: its dumps in ../shared/data/LANG/wikipedia_xml/ are the source")
    parser.add_argument("--source", type=Path, action="append", help="a dump file to take pages from (repeatable)")
    parser.add_argument("--xml-gb", type=float, required=True, help="uncompressed XML to write, in GB (1e9 bytes)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the dump and its index into")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--pages-per-stream", type=int, default=100)
    parser.add_argument("--date", default="20990101", help="the date in the file names")
    args = parser.parse_args(argv)
    if not args.lang and not args.source:
        parser.error("give --lang or --source")
    header, pages = load_pages(args.source or source_dumps(args.lang))
    dbname = re.search(r"<dbname>(\w+)</dbname>", header)
    prefix = f"{args.lang}wiki" if args.lang else dbname.group(1) if dbname else "xxwiki"
    summary = write_dump(header, pages, args.out, prefix, int(args.xml_gb * 1e9), args.workers,
                         args.pages_per_stream, args.date)
    print(json.dumps(summary), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
