"""Writing files so that a crash never leaves a half-written one under the final name, and hashing them."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


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
