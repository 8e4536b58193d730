"""Multistream bz2 dumps read range by range: the same pages as the sequential reader, from the index or a scan,
and every way the file or its index can be wrong."""
from __future__ import annotations

import bz2
import gzip
import importlib.util
import json
import logging
import lzma
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pretrain.dumps import article, dump_xml, multistream
from ulmfit.errors import UlmfitError
from ulmfit.pretrain import multistream as ms
from ulmfit.pretrain.dump import DumpReader
from ulmfit.pretrain.parallel import ordered_map

NAME = "xxwiki-20990101-pages-articles-multistream.xml.bz2"
INDEX = "xxwiki-20990101-pages-articles-multistream-index.txt.bz2"


def _pages(n: int = 230, seed: int = 0) -> list[dict]:
    """Articles, redirects, talk pages and empty pages, with non-ASCII text and characters XML must escape."""
    rng = random.Random(seed)
    words = ["Hà Nội", "Ünïcödé", "Москва", "東京", "naïve", "R&D", "a<b", "x > y", '"quoted"', "it's", "&amp;"]
    pages = []
    for i in range(n):
        title = f"{rng.choice(words)} {i}"
        kind = i % 23
        if kind == 5:
            pages.append({"title": f"Old {i}", "text": f"#REDIRECT [[{title}]]", "redirect": title})
        elif kind == 7:
            pages.append({"title": f"Talk:{title}", "text": "chat & more", "ns": 1})
        elif kind == 11:
            pages.append({"title": title, "text": ""})
        else:
            body = " ".join(rng.choice(words) for _ in range(rng.randint(5, 400)))
            pages.append({"title": title, "text": article(title.replace(" ", "_"), words=20) + "\n" + body})
    return pages


PAGES = _pages()


def _write(tmp_path, xml: str | None = None, per_stream: int = 10, index: bool = True, name: str = NAME,
           encoding: str = "utf-8"):
    data, index_text, offsets = multistream(xml or dump_xml(PAGES), per_stream, encoding)
    path = tmp_path / name
    path.write_bytes(data)
    if index:
        with bz2.open(tmp_path / name.replace(".xml.bz2", "-index.txt.bz2"), "wt", encoding="utf-8") as f:
            f.write(index_text)
    return path, offsets


def _read_ranges(path, **kwargs):
    plan = ms.plan(path, **kwargs)
    assert plan is not None
    pages, infos = [], []
    for item in plan.ranges:
        reader = ms.RangeReader(item)
        pages += list(reader)
        infos.append(reader.info)
    return plan, pages, infos


def _read_all(path):
    reader = DumpReader(path)
    return list(reader), reader.info


@pytest.mark.parametrize("target", [1, 3000, 20_000, 10**9])
@pytest.mark.parametrize("with_index", [True, False])
def test_ranges_read_what_the_sequential_reader_reads(tmp_path, target, with_index):
    path, offsets = _write(tmp_path, index=with_index)
    plan, pages, infos = _read_ranges(path, target_bytes=target)
    expected, info = _read_all(path)
    assert len(expected) == len(PAGES)
    assert pages == expected
    assert sum(i.pages for i in infos) == info.pages
    assert not any(i.truncated for i in infos) and not info.truncated
    assert (plan.info.dbname, plan.info.xml_lang, plan.info.namespaces) == (info.dbname, info.xml_lang,
                                                                            info.namespaces)
    assert [r.start for r in plan.ranges][0] == offsets[1]
    assert plan.ranges[-1].end == path.stat().st_size and plan.ranges[-1].last
    assert not any(r.last for r in plan.ranges[:-1])
    if target == 1:  # a range per stream: the index does not list the last one, which holds </mediawiki> alone
        assert len(plan.ranges) == len(offsets) - (2 if with_index else 1)
    if target == 10**9:
        assert len(plan.ranges) == 1


def _read_in_worker(item):
    reader = ms.RangeReader(item)
    return list(reader), reader.info


def test_worker_processes_read_their_own_ranges(tmp_path):
    path, _ = _write(tmp_path)
    plan = ms.plan(path, target_bytes=5000)
    results = list(ordered_map(_read_in_worker, plan.ranges, workers=2))
    assert [p for pages, _ in results for p in pages] == _read_all(path)[0]


def test_utf16_multistream(tmp_path):
    xml = dump_xml(PAGES[:40]).replace("<mediawiki", '<?xml version="1.0" encoding="UTF-16"?>\n<mediawiki', 1)
    path, _ = _write(tmp_path, xml, encoding="utf-16")
    _, pages, _ = _read_ranges(path, target_bytes=1)
    assert pages == _read_all(path)[0] and len(pages) == 40


@pytest.mark.parametrize("chunk", [1, 7, 4096, ms.SCAN_CHUNK])
def test_index_and_scan_agree(tmp_path, chunk):
    path, offsets = _write(tmp_path)
    header_end = offsets[1]
    from_index = ms.index_stream_starts(ms.index_beside(path), path, header_end)
    scanned = ms.scan_stream_starts(path, chunk=chunk)
    assert scanned == offsets
    assert [0] + from_index + [offsets[-1]] == scanned  # the index lists page streams only


def test_index_is_found_beside_the_dump_and_used(tmp_path):
    path, _ = _write(tmp_path)
    assert ms.index_beside(path) == tmp_path / INDEX
    (tmp_path / INDEX).write_bytes(bz2.compress(b"12:1:Not this dump\n"))
    with pytest.raises(UlmfitError, match="is not an index of"):
        ms.plan(path)
    assert ms.index_beside(tmp_path / "dump.xml.bz2") is None


def _index_lines(tmp_path):
    return bz2.decompress((tmp_path / INDEX).read_bytes()).decode().splitlines(keepends=True)


@pytest.mark.parametrize("damage, message", [
    (lambda lines: lines[:5] + lines[30:31] + lines[5:], "offsets go down at line 7"),
    (lambda lines: lines[:3] + ["not an index line\n"] + lines[3:], "line 4 is not OFFSET:PAGE_ID:TITLE"),
    (lambda lines: [], "it is empty"),
    (lambda lines: lines[10:], "its first stream is at byte"),
    (lambda lines: [f"{int(line.split(':')[0]) + 1}:{line.split(':', 1)[1]}" if i >= 50 else line
                    for i, line in enumerate(lines)], "no bz2 stream starts at byte"),
])
def test_bad_index(tmp_path, damage, message):
    path, _ = _write(tmp_path)
    (tmp_path / INDEX).write_bytes(bz2.compress("".join(damage(_index_lines(tmp_path))).encode()))
    with pytest.raises(UlmfitError, match=message) as e:
        ms.plan(path)
    assert "delete the index or download it again" in str(e.value)


def test_index_pointing_past_the_file(tmp_path):
    path, offsets = _write(tmp_path)
    path.write_bytes(path.read_bytes()[: offsets[10] - 3])  # the download stopped; the index is whole
    with pytest.raises(UlmfitError, match="the dump is cut off or the index belongs to another dump"):
        ms.plan(path)
    (tmp_path / INDEX).unlink()
    _, pages, infos = _read_ranges(path)  # without the index: what the file holds
    assert pages == _read_all(path)[0] and infos[-1].truncated


@pytest.mark.parametrize("where", [0.1, 0.5, 0.97])
@pytest.mark.parametrize("target", [1, 10**9])
def test_cut_off_in_the_last_stream(tmp_path, where, target, caplog):
    rng = random.Random(1)  # a last stream of several bz2 blocks: cut after one, its pages survive
    big = [{"title": f"Big ∑ {i}", "text": " ".join(str(rng.random()) for _ in range(2000))} for i in range(50)]
    xml = dump_xml(PAGES[:50] + big)
    data, _, offsets = multistream(xml, per_stream=50)
    path = tmp_path / "cut.xml.bz2"
    last = offsets[-2]  # the stream of the big pages (the one after it holds </mediawiki>)
    path.write_bytes(data[: last + int((offsets[-1] - last) * where)])
    with caplog.at_level(logging.WARNING):
        _, pages, infos = _read_ranges(path, target_bytes=target)
    expected, info = _read_all(path)
    assert pages == expected
    assert len(pages) == 50 if where < 0.3 else len(pages) > 50  # 3 blocks: the first ends a third of the way
    assert infos[-1].truncated and infos[-1].truncation == info.truncation == "its compressed stream ends early"
    assert not any(i.truncated for i in infos[:-1])
    assert "is truncated" in caplog.text


def test_cut_off_between_streams(tmp_path):
    path, offsets = _write(tmp_path, index=False)
    path.write_bytes(path.read_bytes()[: offsets[-1]])  # the stream holding </mediawiki> is missing
    _, pages, infos = _read_ranges(path, target_bytes=5000)
    expected, info = _read_all(path)
    assert pages == expected and len(pages) == len(PAGES)
    assert infos[-1].truncation == info.truncation == "its XML ends before the closing </mediawiki>"


def test_not_multistream(tmp_path):
    xml = dump_xml(PAGES[:20]).encode()
    first_page_end = xml.index(b"</page>\n") + 8
    for name, data in [
        ("single.xml.bz2", bz2.compress(xml)),
        ("dump.xml.xz", lzma.compress(xml)),
        ("dump.xml.gz", gzip.compress(xml)),
        ("dump.xml", xml),
        ("split-anywhere.xml.bz2", bz2.compress(xml[:1000]) + bz2.compress(xml[1000:])),
        ("page-in-first.xml.bz2", bz2.compress(xml[:first_page_end]) + bz2.compress(xml[first_page_end:])),
        ("header-only.xml.bz2", multistream(dump_xml(PAGES[:1]))[0][: multistream(dump_xml(PAGES[:1]))[2][1]]),
        ("not-a-dump.bz2", bz2.compress(b"<rss/>") + bz2.compress(b"<rss/>")),
    ]:
        path = tmp_path / name
        path.write_bytes(data)
        assert ms.plan(path) is None, name
    with pytest.raises(UlmfitError, match="not a multistream bz2 dump"):
        ms.plan(tmp_path / "single.xml.bz2", index=tmp_path / "any-index.txt.bz2")


def test_damaged_middle_stream_names_its_offset(tmp_path):
    path, offsets = _write(tmp_path)
    data = bytearray(path.read_bytes())
    for i in range(offsets[8] + 200, offsets[8] + 240):
        data[i] ^= 0x55
    path.write_bytes(bytes(data))
    plan = ms.plan(path, target_bytes=5000)
    with pytest.raises(UlmfitError, match=f"the bz2 stream at byte {offsets[8]} of .* is damaged"):
        for item in plan.ranges:
            list(ms.RangeReader(item))


def _with_junk(tmp_path, junk: bytes, after: int):
    """The test dump with `junk` between stream `after` and the next; no index."""
    _, _, offsets = multistream(dump_xml(PAGES), 10)
    data = multistream(dump_xml(PAGES), 10)[0]
    cut = offsets[after + 1]
    path = tmp_path / "junk.xml.bz2"
    path.write_bytes(data[:cut] + junk + data[cut:])
    return path, offsets, cut


def test_stream_header_in_junk_is_no_stream_start(tmp_path):
    junk = b"junk " + b"BZh91AY&SY" + bytes(random.Random(2).randrange(256) for _ in range(300))
    path, offsets, cut = _with_junk(tmp_path, junk, after=5)
    scanned = ms.scan_stream_starts(path)
    assert cut + 5 not in scanned  # the header bytes in the junk do not follow the end of a stream
    assert cut + len(junk) not in scanned  # nor does the real stream after the junk
    assert scanned == offsets[:6] + [o + len(junk) for o in offsets[7:]]
    plan = ms.plan(path, target_bytes=1)
    with pytest.raises(UlmfitError, match=f"the bz2 stream at byte {cut} of .* is damaged"):
        for item in plan.ranges:
            list(ms.RangeReader(item))


def test_false_stream_start_at_a_range_boundary_is_caught(tmp_path):
    # junk that ends like a stream (end marker, CRC) then starts like one: the scan takes it for a stream start
    fake_end = b"x" + (0x177245385090).to_bytes(6, "big") + b"CRC!"
    junk = fake_end + b"BZh91AY&SY" + bytes(random.Random(3).randrange(256) for _ in range(300))
    path, _, cut = _with_junk(tmp_path, junk, after=5)
    assert cut + len(fake_end) in ms.scan_stream_starts(path)
    plan = ms.plan(path, target_bytes=1)
    assert cut + len(fake_end) in [r.start for r in plan.ranges]
    with pytest.raises(UlmfitError, match="the bz2 stream at byte [0-9]+ of .* is damaged"):
        for item in plan.ranges:
            list(ms.RangeReader(item))


def test_trailing_junk_after_the_last_stream_is_ignored_like_the_sequential_reader(tmp_path, caplog):
    path, offsets = _write(tmp_path, index=False)
    path.write_bytes(path.read_bytes() + b"\0" * 100)
    with caplog.at_level(logging.WARNING):
        _, pages, infos = _read_ranges(path, target_bytes=5000)
    expected, info = _read_all(path)
    assert pages == expected and len(pages) == len(PAGES) and not infos[-1].truncated and not info.truncated
    assert "ignored its last 100 bytes" in caplog.text


def test_range_boundaries_inside_a_stream_are_errors(tmp_path):
    path, offsets = _write(tmp_path)
    header_end = offsets[1]
    inside = offsets[3] + 100
    with pytest.raises(UlmfitError, match=f"the bz2 stream at byte {offsets[3]} of .* runs past byte {inside}"):
        list(ms.RangeReader(ms.StreamRange(path, offsets[2], inside, header_end, False)))
    with pytest.raises(UlmfitError, match=f"the bz2 stream at byte {inside} of .* is damaged"):
        list(ms.RangeReader(ms.StreamRange(path, inside, offsets[5], header_end, False)))


def test_streams_that_split_pages_are_errors(tmp_path):
    xml = dump_xml(PAGES[:30])
    start = xml.index("  <page>")
    mid = xml.index("<ns>", xml.index("<title>", start + 5000))  # inside a page
    parts = [xml[:start], xml[start:mid], xml[mid:]]
    path = tmp_path / "split.xml.bz2"
    path.write_bytes(b"".join(bz2.compress(p.encode()) for p in parts))
    plan = ms.plan(path, target_bytes=1)
    assert len(plan.ranges) == 2
    with pytest.raises(UlmfitError, match="end inside a <page>"):
        list(ms.RangeReader(plan.ranges[0]))
    with pytest.raises(UlmfitError, match="do not hold whole <page> elements"):
        list(ms.RangeReader(plan.ranges[1]._replace(last=False)))


def test_imports_nothing_heavy():
    code = ("import sys, ulmfit.pretrain.multistream; "
            "print(sorted({'torch', 'fastai', 'numpy', 'sentencepiece'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _generator():
    """benchmarks/compare/make_multistream_dump.py, which is a script, not part of the package."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "compare" / "make_multistream_dump.py"
    spec = importlib.util.spec_from_file_location("make_multistream_dump", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # worker processes get its functions by module name
    spec.loader.exec_module(module)
    return module


def _check_generated(out, source, lang, xml_bytes, capsys):
    """Run the generator on `source`; every page reads back, in order, with its fresh title and its own text."""
    argv = ["--source", str(source), "--lang", lang, "--xml-gb", str(xml_bytes / 1e9), "--out", str(out),
            "--workers", "2", "--pages-per-stream", "7"]
    assert _generator().main(argv) == 0
    summary = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    dump = out / f"{lang}wiki-20990101-pages-articles-multistream.xml.bz2"
    assert summary["dump"] == str(dump) and summary["xml_bytes"] >= xml_bytes
    assert sorted(p.name for p in out.iterdir()) == [dump.name.replace(".xml.bz2", "-index.txt.bz2"), dump.name]
    source_pages = list(DumpReader(source))
    n = len(source_pages)
    _, pages, infos = _read_ranges(dump, target_bytes=50_000)  # with the index beside it
    assert len(pages) == summary["pages"] > n and not infos[-1].truncated
    for i, page in enumerate(pages):
        src = source_pages[i % n]
        assert page.title == src.title + (f" (copy {i // n})" if i >= n else "")
        assert (page.ns, page.text, page.redirect) == (src.ns, src.text, src.redirect)
    index = bz2.decompress((out / INDEX.replace("xxwiki", f"{lang}wiki")).read_bytes()).decode().splitlines()
    assert [line.split(":", 2)[1:] for line in index] == [[str(i), p.title] for i, p in enumerate(pages, 1)]
    scanned = ms.scan_stream_starts(dump)
    assert scanned[1:-1] == ms.index_stream_starts(ms.index_beside(dump), dump, scanned[1])
    return pages


def test_generator_on_a_test_dump(tmp_path, capsys):
    source = tmp_path / "source.xml.bz2"
    source.write_bytes(bz2.compress(dump_xml(PAGES[:40]).encode()))
    pages = _check_generated(tmp_path / "out", source, "xx", 200_000, capsys)
    assert any("(copy 2)" in p.title for p in pages)


@pytest.mark.slow
def test_generator_on_a_real_dump(shared_data, tmp_path, capsys):
    source = shared_data / "en/wikipedia_xml/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
    pages = _check_generated(tmp_path, source, "en", 8_000_000, capsys)  # the source has 6 MB of XML
    assert pages[206].title == "AccessibleComputing (copy 1)"
