"""Ordered parallel map over a stream, with a bounded number of batches in flight.

`multiprocessing.Pool.imap` reads its whole input ahead of the workers, which would pull an entire dump into
memory when reading is faster than cleaning; here at most `window` batches are queued at any time.

The workers clean and tokenize text and never need torch; yet spaCy imports thinc, which imports torch whenever it
is installed (1.5 CPU seconds and 300 MB per worker). A worker therefore starts with torch marked unimportable,
unless its parent had already imported it (then the fork shares those pages for free).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
from collections import deque
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class WorkerPool:
    """Worker processes that map functions over streams, in input order; in this process when `workers` is 1.

    `initializer(*initargs)` runs once per process, so what it builds (a tokenizer) serves every `map` made with the
    pool. Functions must be module-level.
    """

    def __init__(self, workers: int, initializer: Callable[..., None] | None = None, initargs: tuple = ()):
        self.workers, self._initializer, self._initargs = workers, initializer, initargs
        self._pool = None

    def __enter__(self) -> "WorkerPool":
        if self.workers <= 1:
            if self._initializer is not None:
                self._initializer(*self._initargs)
        else:
            self._pool = mp.get_context("fork").Pool(self.workers, initializer=_start_worker,
                                                     initargs=(self._initializer, self._initargs))
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """`map(fn, items)` with at most `window` items (4 per worker) handed out and not yet taken back."""
        if self._pool is None:
            yield from map(fn, items)
            return
        window = 4 * self.workers
        pending: deque = deque()
        for item in items:
            pending.append(self._pool.apply_async(fn, (item,)))
            if len(pending) >= window:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def ordered_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
) -> Iterator[R]:
    """One `WorkerPool.map` with a pool of its own."""
    with WorkerPool(workers, initializer, initargs) as pool:
        yield from pool.map(fn, items)


def _start_worker(initializer: Callable[..., None] | None, initargs: tuple) -> None:
    if "torch" not in sys.modules:
        sys.modules["torch"] = None  # `import torch` now raises ImportError, which thinc (spaCy) takes as no torch
    if initializer is not None:
        initializer(*initargs)
