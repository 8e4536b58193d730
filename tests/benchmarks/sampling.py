"""Small, fixed-seed slices of the registered tasks' real data, so that fine-tuning tests stay fast."""
from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

from ulmfit.benchmarks.data import ClassificationData, LabelledTexts
from ulmfit.benchmarks.tasks import get_task


def sliced(split: LabelledTexts, n: int, chars: int | None = None) -> LabelledTexts:
    """`n` examples of `split` drawn with a fixed seed, texts cut to `chars` characters."""
    order = list(range(len(split)))
    random.Random(0).shuffle(order)
    keep = order[:n]
    return LabelledTexts([split.texts[i][:chars] for i in keep], [split.labels[i] for i in keep])


def task_slice(shared_data: Path, task_id: str, sizes: tuple[int, int, int],
               chars: int | None = None) -> ClassificationData:
    """A registered task cut to (train, valid, test) sizes, without unlabelled text."""
    data = get_task(task_id).load(shared_data)
    return replace(data, train=sliced(data.train, sizes[0], chars), valid=sliced(data.valid, sizes[1], chars),
                   test=sliced(data.test, sizes[2], chars), unlabelled=[])
