"""Ordered parallel map over a stream, with a bounded number of batches in flight.

`multiprocessing.Pool.imap` reads its whole input ahead of the workers, which would pull an entire dump into
memory when reading is faster than cleaning; here at most `window` batches are queued at any time.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from collections import deque
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def ordered_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    workers: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
    window: int | None = None,
) -> Iterator[R]:
    """`map(fn, items)` over `workers` processes, in input order; runs in this process when `workers` is 1.

    `fn` and `initializer` must be module-level functions; `initializer(*initargs)` runs once per process.
    """
    if workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        yield from map(fn, items)
        return
    window = window or 4 * workers
    with mp.get_context("fork").Pool(workers, initializer=initializer, initargs=initargs) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.apply_async(fn, (item,)))
            if len(pending) >= window:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
