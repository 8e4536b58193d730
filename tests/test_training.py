"""The learner builder's progress-bar rule: one line per epoch (the caller's), and after a mid-epoch resume a bar
of what is left."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from fastai.callback.core import Callback
from fastai.data.core import DataLoaders
from fastai.losses import CrossEntropyLossFlat
from fastai.text.models.awdlstm import awd_lstm_lm_split

from ulmfit.config import load_config
from ulmfit.pretrain.loader import StreamLoader
from ulmfit.pretrain.modeldir import build_language_model
from ulmfit.training import build_learner


class Probe(Callback):
    order = 70

    def before_train(self) -> None:
        self.totals.append(self.learn.progress.pbar.total)

    def before_fit(self) -> None:
        self.totals = []


@pytest.fixture
def learner(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    (np.arange(600) % 50).astype(np.uint16).tofile(tmp_path / "ids.bin")
    cfg = load_config("tiny", {"bs": 4, "bptt": 10})
    train = StreamLoader(tmp_path / "ids.bin", "uint16", 4, 10, train=True)
    valid = StreamLoader(tmp_path / "ids.bin", "uint16", 4, 10, train=False)
    model = build_language_model({"arch": cfg.arch(), "vocab_size": 50})
    return build_learner(DataLoaders(train, valid), model, cfg, torch.device("cpu"), loss_func=CrossEntropyLossFlat(),
                         splitter=awd_lstm_lm_split, path=tmp_path)


def test_on_a_terminal_the_bar_shows_and_fastais_epoch_table_does_not(learner, capsys):
    learner.fit(1, 1e-3, cbs=[probe := Probe()])
    assert hasattr(learner, "progress") and probe.totals == [len(learner.dls.train)]
    assert "train_loss" not in capsys.readouterr().out  # the table header fastai would print for every fit


def test_after_a_mid_epoch_resume_the_bar_counts_what_is_left(learner):
    full = len(learner.dls.train)
    learner.dls.train.skip = 5  # what RunKeeper sets when it resumes at batch 5
    learner.fit(1, 1e-3, cbs=[probe := Probe()])
    assert probe.totals == [full - 5]
