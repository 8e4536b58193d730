"""Labelled texts for classification: what a task loader produces and what fine-tuning consumes.

The task registry (`tasks.py`) turns a benchmark's files into a `ClassificationData`; `finetune.py` trains on it;
`bench.py` scores the test split. Keeping the container here lets each of them stay ignorant of the others.
Labels are strings: one per text for single-label tasks, a list per text for multi-label ones.
"""
from __future__ import annotations

from dataclasses import dataclass, field


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
