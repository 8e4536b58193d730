"""Labelled texts for classification: what a task loader produces and what fine-tuning consumes.

The task registry (`tasks.py`) turns a benchmark's files into a `ClassificationData`; `finetune.py` trains on it;
`bench.py` scores the test split. Keeping the container here lets each of them stay ignorant of the others.
Labels are strings: one per text for single-label tasks, a list per text for multi-label ones.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace

from ulmfit.errors import UlmfitError

log = logging.getLogger(__name__)


@dataclass
class LabelledTexts:
    """Parallel lists of texts and their labels (`str`, or `list[str]` for a multi-label task)."""

    texts: list[str]
    labels: list

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class ClassificationData:
    """A classification task's splits. `labels` is the ordered class list that model outputs index into.

    `unlabelled` is extra text of the task's domain that only language-model fine-tuning reads (the texts of every
    split are read too, without their labels). `dropped` counts rows the loader left out, by reason.
    """

    lang: str
    labels: list[str]
    train: LabelledTexts
    valid: LabelledTexts | None = None
    test: LabelledTexts | None = None
    multi_label: bool = False
    unlabelled: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)


def is_missing(label) -> bool:
    """A label cell with nothing in it: None, NaN, or an empty or all-whitespace string."""
    return label is None or (isinstance(label, float) and math.isnan(label)) or (isinstance(label, str)
                                                                                   and not label.strip())


def drop_unusable(split: LabelledTexts, name: str, dropped: dict[str, int]) -> LabelledTexts:
    """`split` without rows whose text is empty or all whitespace, or whose label is missing.

    Each reason's count is added to `dropped` and logged, so no row disappears without a trace. A multi-label row
    with an empty label list is kept: it says that none of the labels applies.
    """
    keep = []
    empty = missing = 0
    for text, label in zip(split.texts, split.labels):
        if not isinstance(text, str) or not text.strip():
            empty += 1
        elif is_missing(label):
            missing += 1
        else:
            keep.append((text, label))
    for reason, count in (("empty_text", empty), ("missing_label", missing)):
        if count:
            dropped[reason] = dropped.get(reason, 0) + count
            log.warning("%s split: dropped %d row(s) with %s", name, count, reason.replace("_", " "))
    if not empty and not missing:
        return split
    return LabelledTexts([t for t, _ in keep], [lab for _, lab in keep])


def check_data(data: ClassificationData) -> ClassificationData:
    """The data a classifier can train on, or a `UlmfitError` that says what is wrong with it.

    Rows with an empty text or a missing label are dropped (counted in `dropped`, and logged). It is an error when
    the training split ends up empty or with a single class, and when the valid or test split holds labels that
    training never shows (a classifier could never predict them). `labels` is filled from the training split
    (sorted) when the loader left it empty. Calling it twice changes nothing the second time.
    """
    dropped = dict(data.dropped)
    splits = {name: drop_unusable(split, name, dropped) if split is not None else None
              for name, split in (("train", data.train), ("valid", data.valid), ("test", data.test))}
    train = splits["train"]
    if not len(train):
        raise UlmfitError("the training split has no usable rows (every text is empty or every label missing): "
                          "check the text and label columns.")

    def label_set(split: LabelledTexts) -> set[str]:
        return {lab for labs in split.labels for lab in labs} if data.multi_label else set(split.labels)

    seen = label_set(train)
    distinct = {tuple(sorted(labs)) for labs in train.labels} if data.multi_label else seen
    if len(distinct) < 2:
        only = ", ".join(sorted(seen)) or "no label at all"
        raise UlmfitError(f"every training example has the same label ({only}): a classifier needs at least two "
                          "classes, so check the label column.")
    labels = list(data.labels) or sorted(seen)
    if unknown := seen - set(labels):
        raise UlmfitError(f"the training split has labels that are not in the task's label list: "
                          f"{', '.join(sorted(unknown))}; fix the labels or the label list.")
    for name in ("valid", "test"):
        if splits[name] is not None and (unseen := label_set(splits[name]) - seen):
            raise UlmfitError(f"the {name} split has labels that never occur in training "
                              f"({', '.join(sorted(unseen))}): add examples of them to the training data "
                              "or remove those rows.")
    return replace(data, labels=labels, train=train, valid=splits["valid"], test=splits["test"], dropped=dropped)
