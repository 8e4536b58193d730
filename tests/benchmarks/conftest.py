"""Tiny language models pretrained once per test session from the package's sample dumps (they know little,
which is all the fine-tuning tests need)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ulmfit.config import load_config
from ulmfit.pretrain.prepare import PrepareOptions, prepare_corpus
from ulmfit.pretrain.train import pretrain

torch.set_num_threads(1)


def _lm(root: Path, lang: str, tokenizer: str) -> Path:
    prepare_corpus(lang, root / "corpus", sample=True, workers=1,
                   options=PrepareOptions(tokenizer=tokenizer, min_freq=1))
    pretrain(root / "corpus", root / "lm", load_config("tiny", {"bs": 4, "bptt": 12, "epochs": 1}))
    return root / "lm"


@pytest.fixture(scope="session")
def en_sp_lm(tmp_path_factory) -> Path:
    return _lm(tmp_path_factory.mktemp("en-sp"), "en", "sentencepiece")


@pytest.fixture(scope="session")
def en_word_lm(tmp_path_factory) -> Path:
    return _lm(tmp_path_factory.mktemp("en-word"), "en", "word")


@pytest.fixture(scope="session")
def zh_word_lm(tmp_path_factory) -> Path:
    return _lm(tmp_path_factory.mktemp("zh-word"), "zh", "word")
