"""The pretraining driver on CPU with the tiny config: learning, resumption, reload, DDP, generation, bad input."""
from __future__ import annotations

import json
import lzma
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ulmfit.config import load_config
from ulmfit.errors import UlmfitError
from ulmfit.pretrain.checkpoints import Checkpoints
from ulmfit.pretrain.corpus import Corpus
from ulmfit.pretrain.modeldir import ModelDir, build_language_model, save_weights
from ulmfit.pretrain.prepare import PrepareOptions, prepare_corpus
from ulmfit.pretrain.train import RunKeeper, model_config, pretrain
from ulmfit.zoo.pretrained import from_pretrained

TINY = {"bs": 16, "bptt": 30, "lr": 1e-2}
# Tiny models gain nothing from a second thread, and OpenMP threads slow down badly when the machine is busy.
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def wikitext(shared_data, tmp_path_factory):
    """A corpus from the first ~90,000 words of WikiText-2's validation text."""
    root = tmp_path_factory.mktemp("wikitext")
    with lzma.open(shared_data / "en/wikitext-2/valid.txt.xz", "rt", encoding="utf-8") as f:
        lines = [next(f) for _ in range(1500)]
    (root / "wiki.txt").write_text("".join(lines), encoding="utf-8")
    prepare_corpus("en", root / "corpus", text=[root / "wiki.txt"], workers=1,
                   options=PrepareOptions(vocab_size=1000, valid_frac=0.1))
    return root / "corpus"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A very small corpus from the package's English sample dump, for the checks that need no learning."""
    out = tmp_path_factory.mktemp("sample") / "corpus"
    prepare_corpus("en", out, sample=True, workers=1)
    return out


def valid_loss_untrained(corpus, cfg, meta) -> float:
    torch.manual_seed(0)
    model = build_language_model(model_config(Corpus.open(corpus), cfg)).eval()
    ids = torch.from_numpy(np.fromfile(corpus / "valid.bin", dtype=meta["dtype"]).astype(np.int64))[: 16 * 301]
    x = ids.view(16, -1)
    with torch.no_grad():
        logits = model(x[:, :-1])[0]
    return float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1)))


def test_tiny_model_learns_both_directions(wikitext, tmp_path, measured):
    cfg = load_config("tiny", TINY | {"epochs": 2})
    meta = json.loads((wikitext / "meta.json").read_text())
    start = valid_loss_untrained(wikitext, cfg, meta)
    results = pretrain(wikitext, tmp_path / "run", cfg)
    for d in ("fwd", "bwd"):
        final = results[d][-1]["valid_loss"]
        assert final < start - 1.0, (d, start, final)
        assert results[d][-1]["valid_ppl"] == pytest.approx(math.exp(final), rel=1e-3)
        measured(f"tiny {d} valid perplexity after 2 epochs", results[d][-1]["valid_ppl"],
                 f"untrained {math.exp(start):.0f}, {meta['tokens']['train']:,} WikiText-2 tokens")
    run = tmp_path / "run"
    config = ModelDir.open(run).config
    assert config["directions"] == ["fwd", "bwd"] and config["vocab_size"] == meta["vocab_size"]
    for name in ("spm.model", "README.md", "metrics.json", "fwd/model.safetensors", "bwd/model.safetensors"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["fwd"]] == [0, 1]
    assert set(metrics["fwd"][0]) >= {"train_loss", "valid_loss", "valid_ppl", "accuracy", "tokens_per_s"}
    assert not (run / "checkpoints").exists()
    card = (run / "README.md").read_text()
    assert "library_name: ulmfit" in card and "English" in card

    text = from_pretrained(run).generate("The river", words=15, seed=0)
    assert text.startswith("The river") and len(text.split()) >= 15


def _interrupt_at(monkeypatch, batch: int):
    original = RunKeeper.after_batch

    def after_batch(self):
        if self.learn.training and self.epoch == 1 and self.batch + 1 == batch:
            self.interrupted = True  # what the first Ctrl-C does
        original(self)

    monkeypatch.setattr(RunKeeper, "after_batch", after_batch)


def test_resume_matches_uninterrupted_run(small, tmp_path, monkeypatch):
    cfg = load_config("tiny", {"bs": 4, "bptt": 12, "epochs": 2})
    pretrain(small, tmp_path / "whole", cfg, direction="fwd")

    with monkeypatch.context() as m:
        _interrupt_at(m, 7)
        stopped = pretrain(small, tmp_path / "cut", cfg, direction="fwd")
    assert stopped["stopped"] == "interrupted"
    assert Checkpoints(tmp_path / "cut" / "checkpoints", "fwd").complete()
    assert not (tmp_path / "cut" / "config.json").exists()  # not a finished model directory

    with pytest.raises(UlmfitError, match="pass --resume"):
        pretrain(small, tmp_path / "cut", cfg, direction="fwd")
    resumed = pretrain(small, tmp_path / "cut", cfg, direction="fwd", resume=True)
    assert resumed["stopped"] is None
    whole = load_file(tmp_path / "whole" / "fwd" / "model.safetensors")
    cut = load_file(tmp_path / "cut" / "fwd" / "model.safetensors")
    assert whole.keys() == cut.keys()
    for key in whole:
        assert torch.equal(whole[key], cut[key]), key
    assert [r["epoch"] for r in resumed["fwd"]] == [0, 1]


def test_saved_weights_reload_to_identical_outputs(small, tmp_path):
    cfg = load_config("tiny", {"bs": 4, "bptt": 12})
    pretrain(small, tmp_path / "run", cfg, direction="fwd")
    model_dir = ModelDir.open(tmp_path / "run")
    a, config = model_dir.load_language_model("fwd"), model_dir.config
    save_weights(a, tmp_path / "again.safetensors")
    b = build_language_model(config).eval()
    from safetensors.torch import load_model

    load_model(b, str(tmp_path / "again.safetensors"))
    x = torch.randint(0, config["vocab_size"], (2, 20))
    a.reset(), b.reset()
    with torch.no_grad():
        assert torch.equal(a(x)[0], b(x)[0])
    # fastai's key names, so its own loaders find the weights
    keys = set(load_file(tmp_path / "run" / "fwd" / "model.safetensors"))
    assert {"0.rnns.0.weight_hh_l0_raw", "1.decoder.bias"} <= keys


def test_generate_in_the_corpus_language(tmp_path):
    corpus = tmp_path / "vi"
    prepare_corpus("vi", corpus, sample=True, workers=1)
    pretrain(corpus, tmp_path / "run", load_config("tiny", {"bs": 4, "bptt": 12}), direction="fwd")
    text = from_pretrained(tmp_path / "run").generate("Sông Hồng", words=30, seed=1)
    continuation = text[len("Sông Hồng"):]
    assert any(ch in continuation for ch in "ăâđêôơưạảấầẩậắằẳặẹẻẽếềểệỉịọỏốồổộớờởợụủứừửựỳỷỹ")


def test_ddp_two_cpu_processes(small, tmp_path):
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "ulmfit", "pretrain", str(small), "--out", str(tmp_path / "run"), "--config", "tiny",
           "--set", "bs=2", "--set", "bptt=12", "--direction", "fwd", "--device", "cpu"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["fwd"][0]["valid_loss"] > 0
    assert (tmp_path / "run" / "fwd" / "model.safetensors").is_file()


def test_bad_corpus_and_config(small, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UlmfitError, match="not a prepared corpus .*missing meta.json"):
        pretrain(empty, tmp_path / "run", load_config("tiny"))
    old = tmp_path / "old"
    old.mkdir()
    for f in small.iterdir():
        if f.is_file():
            (old / f.name).write_bytes(f.read_bytes())
    meta_text = (old / "meta.json").read_text()
    meta = json.loads(meta_text)
    (old / "meta.json").write_text(json.dumps(meta | {"format_version": 0}))
    with pytest.raises(UlmfitError, match="incompatible version"):
        pretrain(old, tmp_path / "run", load_config("tiny"))
    for damage in (meta_text[: len(meta_text) // 2], "[1, 2]", json.dumps(meta | {"tokenizer_file": None})):
        (old / "meta.json").write_text(damage)
        with pytest.raises(UlmfitError, match="meta.json is damaged .*prepare the corpus again"):
            pretrain(old, tmp_path / "run", load_config("tiny"))
    with pytest.raises(UlmfitError, match="unknown config key.*hiden_p .did you mean hidden_p"):
        load_config("tiny", ["hiden_p=0.1"])
    with pytest.raises(UlmfitError, match="takes a int"):
        load_config("tiny", ["bs=many"])
    with pytest.raises(UlmfitError, match="unknown config 'huge'"):
        load_config("huge")
    with pytest.raises(UlmfitError, match="holds no run to resume"):
        pretrain(small, tmp_path / "fresh", load_config("tiny"), resume=True)


def test_resume_with_another_config_is_refused(small, tmp_path, monkeypatch):
    cfg = load_config("tiny", {"bs": 4, "bptt": 12, "epochs": 2})
    with monkeypatch.context() as m:
        _interrupt_at(m, 3)
        pretrain(small, tmp_path / "run", cfg, direction="fwd")
    with pytest.raises(UlmfitError, match="holds a run with other values of lr"):
        pretrain(small, tmp_path / "run", load_config("tiny", {"bs": 4, "bptt": 12, "epochs": 2, "lr": 0.1}),
                 direction="fwd", resume=True)


@pytest.mark.parametrize("setting, message", [
    ("bs=0", "'bs' must be at least 1, not 0"),
    ("epochs=-2", "'epochs' must be at least 1"),
    ("lr=0", "'lr' must be above 0"),
    ("hidden_p=1", "'hidden_p' must be at least 0 and below 1, not 1.0"),
    ("moms=0.9,1.2,0.9", r"'moms' must be at least 0 and at most 1, not \(0.9, 1.2, 0.9\)"),
    ("pct_start=1.5", "'pct_start' must be at least 0 and at most 1"),
    ("wd=-0.1", "'wd' must be at least 0"),
    ("adam_beta2=1", "'adam_beta2' must be at least 0 and below 1"),
])
def test_config_values_out_of_range_are_refused(setting, message):
    with pytest.raises(UlmfitError, match=message):
        load_config("tiny", [setting])


def test_yaml_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("base: tiny\nemb_sz: 32\nmoms: [0.9, 0.8, 0.9]\n")
    cfg = load_config(path, ["epochs=3"])
    assert (cfg.emb_sz, cfg.n_hid, cfg.epochs, cfg.moms) == (32, 128, 3, (0.9, 0.8, 0.9))


def test_cli_time_budget_then_resume(small, tmp_path):
    from typer.testing import CliRunner

    from ulmfit.cli import app

    args = ["pretrain", str(small), "--out", str(tmp_path / "run"), "--config", "tiny", "--set", "bs=4",
            "--set", "bptt=12", "--direction", "fwd", "--epochs", "2"]
    runner = CliRunner()
    first = runner.invoke(app, args + ["--max-minutes", "0.00001"])
    assert first.exit_code == 0, first.output
    assert "stopped at the time budget" in first.output
    assert Checkpoints(tmp_path / "run" / "checkpoints", "fwd").complete()
    second = runner.invoke(app, args + ["--resume"])
    assert second.exit_code == 0, second.output
    assert "model directory:" in second.output and (tmp_path / "run" / "config.json").is_file()
    generated = runner.invoke(app, ["generate", str(tmp_path / "run"), "The river", "--words", "10", "--seed", "3"])
    assert generated.exit_code == 0 and generated.output.startswith("The river")


def test_ctrl_c_leaves_a_checkpoint(small, tmp_path):
    cmd = [sys.executable, "-m", "ulmfit", "pretrain", str(small), "--out", str(tmp_path / "run"), "--config",
           "tiny", "--set", "bs=4", "--set", "bptt=12", "--direction", "fwd", "--epochs", "500"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ | {"OMP_NUM_THREADS": "1"})
    for line in proc.stderr:
        if "training the fwd model" in line:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "error: interrupted; the checkpoint is saved" in err
    assert Checkpoints(tmp_path / "run" / "checkpoints", "fwd").complete()
    assert not (tmp_path / "run" / "config.json").exists()
