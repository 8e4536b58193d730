"""Shared file helpers: the output lock, and opening compressed files by content."""
from __future__ import annotations

import bz2
import gzip
import lzma
import multiprocessing as mp
import os
import signal
import time

import pytest

from ulmfit.errors import UlmfitError
from ulmfit.files import open_compressed, output_lock


def _hold(out, ready) -> None:
    with output_lock(out):
        ready.set()
        time.sleep(60)


def test_output_lock_refuses_a_second_holder_and_survives_kill_9(tmp_path):
    out = tmp_path / "corpus"
    ready = mp.get_context("fork").Event()
    holder = mp.get_context("fork").Process(target=_hold, args=(out, ready))
    holder.start()
    try:
        assert ready.wait(20)
        with pytest.raises(UlmfitError, match=f"in use by PID {holder.pid}"):
            with output_lock(out):
                pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join()
    with output_lock(out):  # the killed holder's lock is gone with it
        assert (tmp_path / ".corpus.lock").read_text() == str(os.getpid())
    assert not (tmp_path / ".corpus.lock").exists()


@pytest.mark.parametrize("compress", [bz2.compress, lzma.compress, gzip.compress, lambda b: b])
def test_open_compressed_goes_by_content(tmp_path, compress):
    path = tmp_path / "data.txt"  # the name says nothing about the format
    path.write_bytes(compress(b"hello"))
    with open_compressed(path) as f:
        assert f.read() == b"hello"
