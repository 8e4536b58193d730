"""The streaming dump reader: compression, encodings, truncation, and every real dump excerpt."""
from __future__ import annotations

import bz2
import gzip
import logging
import lzma
import random

import pytest

from tests.pretrain.dumps import article, dump_xml
from ulmfit.errors import UlmfitError
from ulmfit.pretrain.dump import DumpReader

PAGES = [{"title": f"Topic {i}", "text": article(f"Topic{i}")} for i in range(5)]

# Complete <page> elements per file, counted independently (`grep -c '</page>'` on the decompressed XML).
REAL_DUMPS = {
    "en/wikipedia_xml/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2": (206, False, "enwiki"),
    "en/wikipedia_xml/enwiki-table-markup.xml.bz2": (5, False, None),
    "bg/wikipedia_xml/bgwiki-latest-pages-articles-shortened.xml.bz2": (3, False, "bgwiki"),
    "bn/wikipedia_xml/bnwiki-truncated-100k.xml.xz": (722, True, "bnwiki"),
    "ja/wikipedia_xml/jawiki-truncated-100k.xml.xz": (238, True, "jawiki"),
    "mr/wikipedia_xml/mrwiki-truncated-100k.xml.xz": (1820, True, "mrwiki"),
    "uk/wikipedia_xml/ukwiki-truncated-100k.xml.xz": (532, True, "ukwiki"),
    "vi/wikipedia_xml/viwiki-truncated-100k.xml.xz": (970, True, "viwiki"),
}


@pytest.mark.parametrize("name", sorted(REAL_DUMPS))
def test_real_dump_pages(shared_data, name, caplog):
    pages_expected, truncated, dbname = REAL_DUMPS[name]
    reader = DumpReader(shared_data / name)
    with caplog.at_level(logging.WARNING):
        pages = list(reader)
    assert len(pages) == pages_expected
    assert reader.info.truncated is truncated
    assert reader.info.dbname == dbname
    assert all(p.title for p in pages)
    if truncated:
        assert f"kept the {pages_expected} complete pages" in caplog.text


def test_real_dumps_cover_every_file(shared_data):
    on_disk = {str(p.relative_to(shared_data)) for p in shared_data.glob("*/wikipedia_xml/*")}
    assert on_disk == set(REAL_DUMPS)


def test_bulgarian_dump_is_utf16_and_reads_as_text(shared_data):
    path = shared_data / "bg/wikipedia_xml/bgwiki-latest-pages-articles-shortened.xml.bz2"
    assert bz2.open(path).read(2) == b"\xff\xfe"  # a UTF-16 little-endian byte-order mark
    pages = list(DumpReader(path))
    assert any("България" in p.text or "български" in p.text.lower() for p in pages)


@pytest.mark.parametrize("compress", ["none", "bz2", "xz", "gz", "bz2-multistream"])
def test_compressions(tmp_path, compress):
    xml = dump_xml(PAGES).encode()
    data = {
        "none": lambda: xml,
        "bz2": lambda: bz2.compress(xml),
        "xz": lambda: lzma.compress(xml),
        "gz": lambda: gzip.compress(xml),
        "bz2-multistream": lambda: bz2.compress(xml[:1000]) + bz2.compress(xml[1000:]),
    }[compress]()
    path = tmp_path / "dump.xml.bin"  # the reader goes by content, not by file name
    path.write_bytes(data)
    reader = DumpReader(path)
    assert [p.title for p in reader] == [p["title"] for p in PAGES]
    assert not reader.info.truncated


def test_utf16_with_bom(tmp_path):
    xml = dump_xml(PAGES).replace("<mediawiki", '<?xml version="1.0" encoding="UTF-16"?>\n<mediawiki', 1)
    path = tmp_path / "dump.xml"
    path.write_bytes(xml.encode("utf-16"))
    assert len(list(DumpReader(path))) == 5


def test_cut_mid_page_keeps_complete_pages(tmp_path, caplog):
    xml = dump_xml(PAGES).encode()
    cut = xml.index(b"<title>Topic 3</title>") + 10
    path = tmp_path / "cut.xml"
    path.write_bytes(xml[:cut])
    reader = DumpReader(path)
    with caplog.at_level(logging.WARNING):
        titles = [p.title for p in reader]
    assert titles == ["Topic 0", "Topic 1", "Topic 2"]
    assert reader.info.truncated
    assert "kept the 3 complete pages" in caplog.text


def test_broken_last_character(tmp_path):
    pages = PAGES[:2] + [{"title": "Ünïcödé", "text": "Ünïcödé " * 100}]
    xml = dump_xml(pages, close=False).encode()
    cut = xml.rindex("é".encode()) + 1  # half of a two-byte character
    path = tmp_path / "broken.xml.xz"
    path.write_bytes(lzma.compress(xml[:cut]))
    reader = DumpReader(path)
    assert [p.title for p in reader] == ["Topic 0", "Topic 1"]
    assert reader.info.truncated


def test_truncated_compressed_stream(tmp_path):
    rng = random.Random(0)
    pages = [{"title": f"T{i}", "text": " ".join(str(rng.random()) for _ in range(300))} for i in range(200)]
    data = gzip.compress(dump_xml(pages).encode())
    path = tmp_path / "short.xml.gz"
    path.write_bytes(data[: len(data) * 3 // 4])
    reader = DumpReader(path)
    pages = list(reader)
    assert 0 < len(pages) < 200
    assert reader.info.truncated


def test_compressed_stream_cut_before_first_page(tmp_path):
    data = bz2.compress(dump_xml(PAGES).encode())  # one bz2 block: nothing decodes until it is whole
    path = tmp_path / "short.xml.bz2"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UlmfitError, match="breaks off before its first page"):
        list(DumpReader(path))


def test_namespaces_redirects_and_siteinfo(tmp_path):
    pages = PAGES[:1] + [{"title": "Old", "text": "#REDIRECT [[Topic 0]]", "redirect": "Topic 0"},
                         {"title": "Talk:Topic 0", "text": "chat", "ns": 1}]
    path = tmp_path / "d.xml"
    path.write_text(dump_xml(pages, lang="de", file_ns="Datei", category_ns="Kategorie"), encoding="utf-8")
    reader = DumpReader(path)
    got = [(p.title, p.ns, p.redirect) for p in reader]
    assert got == [("Topic 0", 0, False), ("Old", 0, True), ("Talk:Topic 0", 1, False)]
    assert reader.info.dbname == "dewiki" and reader.info.xml_lang == "de"
    assert reader.info.namespaces[6] == "Datei" and reader.info.namespaces[14] == "Kategorie"


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"just some words, not XML at all\n", "not a MediaWiki XML dump"),
    (b'<?xml version="1.0"?><rss><channel/></rss>', "not a MediaWiki dump"),
    (bz2.compress(b"plain text inside bz2"), "not a MediaWiki XML dump"),
])
def test_not_a_dump(tmp_path, content, message):
    path = tmp_path / "bad.xml"
    path.write_bytes(content)
    with pytest.raises(UlmfitError, match=message):
        list(DumpReader(path))


def test_missing_file(tmp_path):
    with pytest.raises(UlmfitError, match="does not exist"):
        DumpReader(tmp_path / "nope.xml.bz2")
