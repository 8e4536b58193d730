"""Files: writing so that a crash never leaves a half-written one under the final name, hashing, and opening
compressed files by what they hold rather than by their name."""
from __future__ import annotations

import bz2
import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
from pathlib import Path
from typing import BinaryIO, Iterator

from ulmfit.errors import UlmfitError

# Errors a damaged or cut-off compressed file raises while it is read.
DECOMPRESSION_ERRORS = (OSError, EOFError, lzma.LZMAError)
# Names that say a file is compressed; what `open_compressed` reads goes by content, these only look through names.
COMPRESSION_SUFFIXES = (".gz", ".xz", ".bz2")


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary name beside `path`, then rename: readers see the old file or the whole new one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path) -> dict | None:
    """The JSON in `path`, or None when the file is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def file_digest(path: Path, algo: str = "sha256", chunk: int = 1 << 20) -> str:
    """The hex digest (sha256 by default, any `hashlib` name) of a file's bytes, read in chunks (weights and dumps
    can be large)."""
    digest = hashlib.new(algo)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def open_compressed(path: Path | str) -> BinaryIO:
    """`path` opened for reading bytes, decompressed when it is bz2 (multistream too), xz or gzip.

    The format comes from the file's first bytes, so a dump saved under another name still reads.
    `os.lseek(f.fileno(), 0, os.SEEK_CUR)` tells how far into the file on disk reading has got.
    """
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(path)
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(path)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(path)
    return open(path, "rb")


def open_compressed_text(path: Path | str, errors: str = "strict") -> io.TextIOWrapper:
    """`open_compressed` as UTF-8 text (a byte-order mark is skipped)."""
    return io.TextIOWrapper(open_compressed(path), encoding="utf-8-sig", errors=errors)


@contextlib.contextmanager
def output_lock(out: Path | str) -> Iterator[None]:
    """Hold a lock on an output folder while a command writes it; a second command on the same folder gets a
    one-line error naming the process that holds it.

    The lock is `flock` on a file beside the folder (`.NAME.lock`), so it survives the folder being swapped in,
    and the kernel releases it when the holder exits, however it exits (kill -9 included): a stale lock file
    never blocks the next run.
    """
    out = Path(out)
    path = out.parent / f".{out.name}.lock"
    while True:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UlmfitError(f"cannot write to the output directory {out} ({e.strerror}); choose another "
                              "output folder.") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UlmfitError(f"{out} is in use by PID {holder}; wait for that run to finish (or stop it), or "
                              "choose another output folder.") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file as we opened it: lock the one that is there now
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def swap_in(new: Path, final: Path) -> None:
    """Put the finished folder `new` in the place of `final`: the old `final` (if any) steps aside as `.NAME.old`,
    `new` takes its name, the old one is deleted. A crash between the two renames leaves `.NAME.old`, which
    `recover_swap` puts back."""
    old = _aside(final)
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)


def recover_swap(final: Path) -> None:
    """Undo what a crash in the middle of `swap_in` left: the old folder goes back if the new one never arrived."""
    old = _aside(final)
    if old.exists():
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, final)


def _aside(final: Path) -> Path:
    return final.parent / f".{final.name}.old"


def is_relative_file(name: object) -> bool:
    """Whether `name` (from a catalogue, a config or a repository listing) is a relative path that stays inside
    the folder it is joined to: no absolute path, no drive, no `..` part, no empty or `.` part, no backslash."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name or name.startswith("/"):
        return False
    return all(part not in ("", ".", "..") for part in name.split("/")) and ":" not in name.split("/")[0]


def resolves_inside(path: Path | str, folder: Path | str) -> bool:
    """Whether `path`, its links followed, lies inside `folder` (its links followed too)."""
    try:
        return Path(path).resolve().is_relative_to(Path(folder).resolve())
    except (OSError, RuntimeError):  # a link loop
        return False
