"""Worker pools: order kept, one initialisation per process for every map, and no torch in the workers."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from ulmfit.pretrain.parallel import WorkerPool

_INITS: list[str] = []


def _init(tag: str) -> None:
    _INITS.append(tag)


def _where(x: int) -> tuple[int, int, list[str]]:
    return x * x, os.getpid(), list(_INITS)


def test_each_worker_initialises_once_for_every_map():
    with WorkerPool(2, _init, ("tok",)) as pool:
        first = list(pool.map(_where, range(40)))
        second = list(pool.map(_where, range(40, 60)))
    assert [r[0] for r in first + second] == [x * x for x in range(60)]
    pids = {pid for _, pid, _ in first + second}
    assert os.getpid() not in pids and len(pids) <= 2
    assert all(inits == ["tok"] for _, _, inits in first + second)
    assert _INITS == []  # nothing ran in this process


def test_one_worker_runs_here(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "_INITS", [])
    with WorkerPool(1, _init, ("here",)) as pool:
        results = list(pool.map(_where, range(3))) + list(pool.map(_where, range(3)))
    assert {pid for _, pid, _ in results} == {os.getpid()}
    assert results[-1][2] == ["here"]


PROBE = textwrap.dedent("""
    import sys
    {preload}
    from ulmfit.pretrain.parallel import WorkerPool

    def probe(_):
        import spacy
        from thinc import compat
        spacy.blank("en")("works")
        return sys.modules.get("torch") is not None, compat.has_torch

    with WorkerPool(2) as pool:
        print(set(pool.map(probe, range(4))))
""")


def test_workers_import_spacy_without_torch():
    """spaCy's thinc imports torch when it is installed: 1.5 CPU seconds and 300 MB a worker that only tokenizes."""
    out = subprocess.run([sys.executable, "-c", PROBE.format(preload="")], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "{(False, False)}"


def test_workers_keep_a_torch_their_parent_imported():
    out = subprocess.run([sys.executable, "-c", PROBE.format(preload="import torch")], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "{(True, True)}"
