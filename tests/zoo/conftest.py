"""Tiny model directories, trained once per test session, for the zoo's tests (the local Hub's `hub` fixture is in
tests/conftest.py)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from ulmfit.config import load_config
from ulmfit.pretrain.prepare import PrepareOptions, prepare_corpus
from ulmfit.pretrain.train import pretrain

torch.set_num_threads(1)
TINY = {"bs": 4, "bptt": 12, "epochs": 1}


def _train(root: Path, tokenizer: str) -> Path:
    corpus = root / "corpus"
    prepare_corpus("en", corpus, sample=True, workers=1, options=PrepareOptions(tokenizer=tokenizer, min_freq=1))
    run = root / "run"
    pretrain(corpus, run, load_config("tiny", TINY), direction="both")
    return run


@pytest.fixture(scope="session")
def _sp_model(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("sp-model"), "sentencepiece")


@pytest.fixture(scope="session")
def _word_model(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("word-model"), "word")


def _copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


@pytest.fixture
def sp_model_dir(_sp_model, tmp_path) -> Path:
    """A fresh copy of a tiny SentencePiece model directory (fwd and bwd) that the test may change."""
    return _copy(_sp_model, tmp_path / "sp-model")


@pytest.fixture
def word_model_dir(_word_model, tmp_path) -> Path:
    """A fresh copy of a tiny word-level model directory (fwd and bwd) that the test may change."""
    return _copy(_word_model, tmp_path / "word-model")


@pytest.fixture
def run_dir(sp_model_dir):
    """A tiny model directory as a run leaves it: with run state that must never be published."""
    (sp_model_dir / "checkpoints").mkdir(exist_ok=True)
    (sp_model_dir / "checkpoints" / "fwd-epoch0.pt").write_bytes(b"optimizer state")
    (sp_model_dir / "run.json").write_text("{}")
    return sp_model_dir
