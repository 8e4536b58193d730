"""Dump download against a local HTTP server on 127.0.0.1: checksums, caching, resume after a dropped connection."""
from __future__ import annotations

import hashlib
import logging
import random
import socket

import pytest

from tests.file_server import Server, serve
from ulmfit.errors import UlmfitError
from ulmfit.langs.base import Language
from ulmfit.pretrain.download import download, resolve_dump

VI = Language(code="vi", name="Vietnamese")
LATEST = "viwiki/latest/viwiki-latest-pages-articles-multistream.xml.bz2"
DATED = "viwiki/20240601/viwiki-20240601-pages-articles-multistream.xml.bz2"
PAYLOAD = random.Random(0).randbytes(300_000)
SHA1 = hashlib.sha1(PAYLOAD).hexdigest()


def put_sums(server: Server, folder: str, lines: dict[str, str]) -> None:
    """A Wikimedia `sha1sums.txt` for the dump folder `folder` (`wiki/date`)."""
    wiki, date = folder.split("/")
    server.put(f"{folder}/{wiki}-{date}-sha1sums.txt", "".join(f"{h}  {n}\n" for n, h in lines.items()).encode())


@pytest.fixture
def server(tmp_path):
    yield from serve(tmp_path / "www")


@pytest.fixture
def mirror(server, monkeypatch):
    """The server as `ULMFIT_DUMPS_URL`, with the latest dump and its sums file listed under the dated name."""
    monkeypatch.setenv("ULMFIT_DUMPS_URL", server.url)
    server.put(LATEST, PAYLOAD)
    put_sums(server, "viwiki/latest", {
        "viwiki-20240601-pages-articles-multistream.xml.bz2": SHA1,
        "viwiki-20240601-stub.xml.gz": "0" * 40,
    })
    return server


# Wikimedia's latest/ sums file lists the dated file names; a mirror may list the latest/ names.
@pytest.mark.parametrize("listed_as", [DATED.split("/")[-1], LATEST.split("/")[-1]])
def test_latest_downloads_verifies_and_is_cached(server, monkeypatch, tmp_path, listed_as):
    monkeypatch.setenv("ULMFIT_DUMPS_URL", server.url)
    monkeypatch.setenv("ULMFIT_CACHE", str(tmp_path / "cache"))
    server.put(LATEST, PAYLOAD)
    put_sums(server, "viwiki/latest", {listed_as: SHA1})

    path = resolve_dump("latest", VI)
    assert path == tmp_path / "cache" / "dumps" / LATEST
    assert path.read_bytes() == PAYLOAD
    assert not path.with_name(path.name + ".part").exists()
    assert server.ranges(LATEST) == [None]

    assert resolve_dump("latest", VI) == path
    assert len(server.ranges(LATEST)) == 1  # the second call found it in the cache


def test_dropped_connection_keeps_part_then_resumes(mirror, tmp_path):
    mirror.cuts["/" + LATEST] = [100_000, 100_000]  # the first try and its automatic retry both break off
    cache = tmp_path / "cache"
    final = cache / LATEST
    part = final.with_name(final.name + ".part")

    with pytest.raises(UlmfitError, match="partial file is kept") as err:
        resolve_dump("latest", VI, cache)
    assert str(part) in str(err.value) and "again resumes" in str(err.value)
    assert mirror.ranges(LATEST) == [None, "bytes=100000-"]
    assert part.stat().st_size == 200_000
    assert not final.exists()

    assert resolve_dump("latest", VI, cache) == final  # the server is healed
    assert mirror.ranges(LATEST)[-1] == "bytes=200000-"
    assert final.read_bytes() == PAYLOAD
    assert not part.exists()


def test_one_drop_is_resumed_on_the_spot(mirror, tmp_path):
    mirror.cuts["/" + LATEST] = [123_456]
    path = resolve_dump("latest", VI, tmp_path / "cache")
    assert path.read_bytes() == PAYLOAD
    assert mirror.ranges(LATEST) == [None, "bytes=123456-"]


def test_wrong_sha1_deletes_the_download(mirror, tmp_path):
    put_sums(mirror, "viwiki/latest", {"viwiki-latest-pages-articles-multistream.xml.bz2": "f" * 40})
    with pytest.raises(UlmfitError, match="corrupt"):
        resolve_dump("latest", VI, tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("*.bz2*"))


def test_stale_cached_file_is_downloaded_again(mirror, tmp_path):
    final = tmp_path / "cache" / LATEST
    final.parent.mkdir(parents=True)
    final.write_bytes(b"an older dump")
    assert resolve_dump("latest", VI, tmp_path / "cache").read_bytes() == PAYLOAD
    assert len(mirror.ranges(LATEST)) == 1


def test_server_that_ignores_range_starts_over(mirror, tmp_path):
    mirror.ignore_range = True
    part = tmp_path / "cache" / (LATEST + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 1000)
    assert resolve_dump("latest", VI, tmp_path / "cache").read_bytes() == PAYLOAD
    assert mirror.ranges(LATEST) == ["bytes=1000-"]


def test_complete_part_is_finished_without_transfer(mirror, tmp_path):
    part = tmp_path / "cache" / (LATEST + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD)
    assert resolve_dump("latest", VI, tmp_path / "cache").read_bytes() == PAYLOAD
    assert mirror.ranges(LATEST) == ["bytes=300000-"]


@pytest.mark.parametrize("good", [True, False])
def test_url_with_dumps_layout_is_checked_against_its_folder(server, tmp_path, good):
    server.put(DATED, PAYLOAD)
    put_sums(server, "viwiki/20240601",
             {"viwiki-20240601-pages-articles-multistream.xml.bz2": SHA1 if good else "0" * 40})
    url = f"{server.url}/{DATED}"
    if good:
        assert resolve_dump(url, VI, tmp_path / "cache") == tmp_path / "cache" / DATED
        assert (tmp_path / "cache" / DATED).read_bytes() == PAYLOAD
    else:
        with pytest.raises(UlmfitError, match="corrupt"):
            resolve_dump(url, VI, tmp_path / "cache")
        assert not (tmp_path / "cache" / DATED).exists()
    assert server.ranges("viwiki/20240601/viwiki-20240601-sha1sums.txt") == [None]


INDEX = DATED.replace("-multistream.xml.bz2", "-multistream-index.txt.bz2")
INDEX_BYTES = b"BZh9 an index"


@pytest.mark.parametrize("index", ["listed", "wrong sha1", "absent"])
def test_multistream_dump_comes_with_its_index(server, tmp_path, caplog, index):
    """The index lets the workers skip a scan of the dump: fetched and checked when the folder has it; a missing
    or corrupt one is only a warning (the dump reads without it)."""
    server.put(DATED, PAYLOAD)
    sums = {DATED.split("/")[-1]: SHA1}
    if index != "absent":
        server.put(INDEX, INDEX_BYTES)
        sums[INDEX.split("/")[-1]] = hashlib.sha1(INDEX_BYTES).hexdigest() if index == "listed" else "0" * 40
    put_sums(server, "viwiki/20240601", sums)
    with caplog.at_level(logging.WARNING, logger="ulmfit.pretrain.download"):
        path = resolve_dump(f"{server.url}/{DATED}", VI, tmp_path / "cache")
    assert path.read_bytes() == PAYLOAD
    fetched = tmp_path / "cache" / INDEX
    if index == "listed":
        assert fetched.read_bytes() == INDEX_BYTES and not caplog.text
    else:
        assert not fetched.exists() and "scan the dump for its streams instead" in caplog.text


def test_url_without_sums_file_warns_and_downloads(server, tmp_path, caplog):
    server.put(DATED, PAYLOAD)
    with caplog.at_level(logging.WARNING, logger="ulmfit.pretrain.download"):
        path = resolve_dump(f"{server.url}/{DATED}", VI, tmp_path / "cache")
    assert path.read_bytes() == PAYLOAD
    assert "will not be verified" in caplog.text


def test_url_outside_dumps_layout_is_named_by_its_file(server, tmp_path):
    server.put("files/my-dump.xml.bz2", PAYLOAD)
    path = resolve_dump(f"{server.url}/files/my-dump.xml.bz2", VI, tmp_path / "cache")
    assert path == tmp_path / "cache" / "my-dump.xml.bz2"
    assert path.read_bytes() == PAYLOAD


def test_404_names_the_url(server, tmp_path):
    url = f"{server.url}/{DATED}"
    with pytest.raises(UlmfitError, match="404") as err:
        resolve_dump(url, VI, tmp_path / "cache")
    assert url in str(err.value) and "--dump PATH" in str(err.value)


def test_unreachable_host(tmp_path):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/dump.xml.bz2"
    with pytest.raises(UlmfitError, match="could not reach") as err:
        download(url, tmp_path / "dump.xml.bz2")
    assert url in str(err.value) and "ULMFIT_DUMPS_URL" in str(err.value)


def test_local_path(tmp_path):
    dump = tmp_path / "viwiki.xml.bz2"
    dump.write_bytes(b"BZh9")
    assert resolve_dump(str(dump), VI) == dump
    with pytest.raises(UlmfitError, match="does not exist"):
        resolve_dump(str(tmp_path / "missing.xml.bz2"), VI)
