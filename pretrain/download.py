"""Find or fetch the Wikipedia dump that `ulmfit prepare --dump` names: a local file, a URL, or `latest`.

Downloads stream into `NAME.part` next to the cache entry and resume from there with an HTTP range request when
a connection drops, so a multi-gigabyte dump never starts over; the file only gets its final name once its sha1
matches the one Wikimedia publishes next to it. `download` also fetches the older third-party checkpoints of the
model zoo (`ulmfit.zoo.convert`), checked against a sha256 where the catalogue has one.
"""
from __future__ import annotations

import http.client
import logging
import os
import re
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import unquote, urlsplit
from urllib.request import Request, urlopen

from tqdm import tqdm

from ulmfit.errors import UlmfitError
from ulmfit.files import file_digest
from ulmfit.langs.base import DUMPS_URL, Language
from ulmfit.pretrain.multistream import index_name

log = logging.getLogger(__name__)

CHUNK = 1 << 20
TIMEOUT = 60.0
_HINT = "pass --dump PATH to use a dump file you already have, or set ULMFIT_DUMPS_URL to a mirror"
_CONTENT_RANGE = re.compile(r"bytes (?:(\d+)-\d+|\*)/(\d+|\*)")


class _Dropped(Exception):
    """The connection broke off during the body; what arrived is in the `.part` file."""


def resolve_dump(spec: str, lang: Language, cache_dir: Path | None = None) -> Path:
    """The local path of the dump that `spec` names: `latest`, an http(s) URL, or a local file.

    `latest` comes from `ULMFIT_DUMPS_URL` when set, else from dumps.wikimedia.org. URLs are downloaded (once)
    into `cache_dir`, checked against the `sha1sums.txt` of their dump folder when they have the dumps layout.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if spec == "latest":
        base = os.environ.get("ULMFIT_DUMPS_URL") or DUMPS_URL
        url, sums_url = lang.dump_url("latest", base), lang.checksums_url("latest", base)
        return _download_dump(url, cache_dir / lang.wiki / "latest", sums_url)
    if spec.startswith(("http://", "https://")):
        parts = unquote(urlsplit(spec).path).split("/")
        name = parts[-1]
        if not name:
            raise UlmfitError(f"the dump URL {spec} does not end in a file name; give the URL of the .xml.bz2 file.")
        wiki, date = (parts[-3], parts[-2]) if len(parts) >= 3 else ("", "")
        if not (wiki and date and name.startswith(f"{wiki}-{date}-")):
            return download(spec, cache_dir / name)
        if wiki != lang.wiki:
            log.warning("the dump %s is from %s, not %s (%s)", name, wiki, lang.wiki, lang.name)
        sums_url = f"{spec.rsplit('/', 1)[0]}/{wiki}-{date}-sha1sums.txt"
        return _download_dump(spec, cache_dir / wiki / date, sums_url)
    path = Path(spec).expanduser()
    if not path.exists():
        raise UlmfitError(
            f"dump file {path} does not exist; give the path of a downloaded pages-articles .xml.bz2 file, "
            "its URL, or 'latest' to download the newest dump."
        )
    return path


def _download_dump(url: str, folder: Path, sums_url: str) -> Path:
    """A dump from a Wikimedia dump folder into `folder`, checked against the folder's sha1 sums; for a multistream
    dump its index too, which lets the workers skip scanning for streams (without it they scan)."""
    sums = _published_sums(sums_url)
    name = url.rsplit("/", 1)[1]
    path = download(url, folder / name, _sha1_of(sums, sums_url, name))
    index = index_name(name)
    if index is not None:
        index_url = f"{url.rsplit('/', 1)[0]}/{index}"
        try:
            download(index_url, folder / index, _sha1_of(sums, sums_url, index))
        except UlmfitError as e:
            log.warning("no index for %s (%s); the workers will scan the dump for its streams instead", name, e)
    return path


def download(url: str, dest: Path, sha1: str | None = None, sha256: str | None = None, hint: str = _HINT) -> Path:
    """Download `url` to `dest` through `dest.part`, resuming a `.part` left by an earlier run.

    A `dest` that is already there and matches the published `sha1` or `sha256` (or any `dest`, without one) is
    not fetched again. A dropped connection is resumed once on the spot; a second drop keeps the `.part` for the
    next run. `hint` ends the message of a failed request: what the user can do instead.
    """
    dest = Path(dest)
    algo, expected = ("sha1", sha1) if sha1 is not None else ("sha256", sha256)
    if dest.exists():
        if expected is None or file_digest(dest, algo) == expected:
            log.info("using %s, downloaded earlier", dest)
            return dest
        log.warning("%s does not match the published %s; downloading it again", dest, algo)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(2):
        try:
            _fetch(url, part, dest.name, hint)
            break
        except _Dropped as e:
            got = part.stat().st_size if part.exists() else 0
            if attempt:
                raise UlmfitError(
                    f"the download of {url} broke off after {_mib(got)} ({e}); the partial file is kept at {part} "
                    "and running the same command again resumes it."
                ) from None
            log.warning("the connection dropped after %s (%s); resuming", _mib(got), e)
    if expected is not None:
        got = file_digest(part, algo)
        if got != expected:
            part.unlink()
            raise UlmfitError(
                f"the download of {url} is corrupt ({algo} {got}, expected {expected}) and was deleted; "
                "run the same command again to download it anew."
            )
    os.replace(part, dest)
    log.info("downloaded %s", dest)
    return dest


def _fetch(url: str, part: Path, label: str, hint: str) -> None:
    """Append the rest of `url` to `part` (all of it when the server ignores the range); raises `_Dropped`."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "ulmfit", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urlopen(Request(url, headers=headers), timeout=TIMEOUT)
    except HTTPError as e:
        e.close()
        if e.code == 416 and offset:
            m = _CONTENT_RANGE.fullmatch(e.headers.get("Content-Range", ""))
            if m and m.group(2) == str(offset):  # stopped between the last byte and the rename: the .part is whole
                return
            part.unlink()  # longer than the file on the server: the .part belongs to another version
            return _fetch(url, part, label, hint)
        raise UlmfitError(f"could not download {url}: HTTP {e.code} {e.reason}; {hint}.") from None
    except (URLError, OSError, http.client.HTTPException) as e:
        reason = e.reason if isinstance(e, URLError) else e
        kept = f"; the partial file is kept at {part} for the next run to resume" if offset else ""
        raise UlmfitError(f"could not reach {url} ({reason}){kept}; {hint}.") from None
    with resp:
        if resp.status == 206:
            m = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
            if not m or m.group(1) != str(offset):
                raise UlmfitError(
                    f"the server of {url} answered the resume request with the wrong range "
                    f"({resp.headers.get('Content-Range')}); delete {part} and run the same command again."
                )
            log.info("resuming %s at %s", label, _mib(offset))
        else:
            offset = 0
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        done = offset
        with open(part, "ab" if offset else "wb") as f, tqdm(
            total=total, initial=offset, desc=label, unit="B", unit_scale=True, unit_divisor=1024, disable=None
        ) as bar:
            try:
                while chunk := resp.read(CHUNK):
                    f.write(chunk)
                    done += len(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as e:
                raise _Dropped(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from e
    if total is not None and done < total:
        raise _Dropped(f"the server closed the connection before the {_mib(total)} it announced")


def _published_sums(sums_url: str) -> dict[str, str] | None:
    """The sha1 of each file a dump folder's `sha1sums.txt` lists, or None (with a warning) when it cannot be read."""
    try:
        with urlopen(Request(sums_url, headers={"User-Agent": "ulmfit"}), timeout=TIMEOUT) as resp:
            text = resp.read().decode("utf-8", "replace")
    except (URLError, OSError, http.client.HTTPException) as e:
        reason = e.reason if isinstance(e, URLError) else e
        log.warning("could not fetch the checksums %s (%s); the download will not be verified", sums_url, reason)
        return None
    sums = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2:
            sums[fields[1].lstrip("*")] = fields[0].lower()
    return sums


def _sha1_of(sums: dict[str, str] | None, sums_url: str, name: str) -> str | None:
    """The sha1 the sums list for `name`, or None (with a warning where there are sums) when they do not say."""
    if sums is None:
        return None
    if name in sums:
        return sums[name]
    # In a `latest/` folder the sums file is a link to the dated one, which lists the files by their dated names.
    head, sep, tail = name.partition("-latest-")
    if sep:
        dated = re.compile(rf"{re.escape(head)}-\d{{8}}-{re.escape(tail)}")
        hits = [h for n, h in sums.items() if dated.fullmatch(n)]
        if len(hits) == 1:
            return hits[0]
    log.warning("%s does not list %s; the download will not be verified", sums_url, name)
    return None


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def default_cache_dir(kind: str = "dumps") -> Path:
    """Where downloads of one kind are kept: `$ULMFIT_CACHE/KIND`, by default `~/.cache/ulmfit/KIND`."""
    root = os.environ.get("ULMFIT_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "ulmfit") / kind
