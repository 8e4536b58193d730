"""Faults during pretraining, made to happen: damaged checkpoints, NaN, kill -9 at many moments, a second run on
the same folder, a failed run followed by the same command, a corpus without valid text.

Each test makes the fault and checks what the user gets: the same final weights as an uninterrupted run where the
run can go on, or one `error:` line and a non-zero exit status where it cannot, and never NaN weights written as a
finished model.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.faults import wait_for
from ulmfit.cli import app
from ulmfit.config import load_config
from ulmfit.errors import UlmfitError
from ulmfit.files import file_digest
from ulmfit.pretrain import checkpoints as checkpoints_module
from ulmfit.pretrain.checkpoints import Checkpoints
from ulmfit.pretrain.modeldir import ModelDir
from ulmfit.pretrain.prepare import PrepareOptions, prepare_corpus
from ulmfit.pretrain.train import RunKeeper, pretrain

torch.set_num_threads(1)
SMALL = {"bs": 4, "bptt": 12}
EVERY_BATCH = 1e-6  # --checkpoint-minutes that writes a checkpoint after every batch
runner = CliRunner()


class Crash(BaseException):
    """Stands for kill -9 in-process: nothing catches it, and no cleanup of ours runs (only `finally` blocks,
    whose one effect here, releasing the lock, the kernel also has on a kill)."""


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "corpus"
    prepare_corpus("en", out, sample=True, workers=1)
    return out


@pytest.fixture(scope="module")
def reference(small, tmp_path_factory) -> dict:
    """Uninterrupted runs to compare with: fwd for 3 epochs, and both directions for 2."""
    root = tmp_path_factory.mktemp("reference")
    pretrain(small, root / "fwd3", load_config("tiny", SMALL | {"epochs": 3}), direction="fwd")
    pretrain(small, root / "both2", load_config("tiny", SMALL | {"epochs": 2}), direction="both")
    return {"fwd3": root / "fwd3", "both2": root / "both2"}


def assert_same_weights(a: Path, b: Path, directions=("fwd",)) -> None:
    for d in directions:
        wa, wb = load_file(a / d / "model.safetensors"), load_file(b / d / "model.safetensors")
        assert wa.keys() == wb.keys()
        for key in wa:
            assert torch.equal(wa[key], wb[key]), (d, key)


def cli_args(corpus: Path, out: Path, *more: str) -> list[str]:
    return ["pretrain", str(corpus), "--out", str(out), "--config", "tiny", "--set", "bs=4", "--set", "bptt=12",
            *more]


def one_error_line(result) -> str:
    """The CLI's output for a fault: exit status non-zero, exactly one `error:` line, no traceback."""
    assert result.exit_code != 0, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def stop_at(monkeypatch, epoch: int, batch: int, how: str = "interrupt", direction: str = "fwd") -> None:
    """At (epoch, batch) of `direction`: ask for a clean stop like Ctrl-C ("interrupt"), or `Crash` right after
    the batch ("crash")."""
    original = RunKeeper._after_train_batch

    def after(self):
        at = self.direction == direction and self.epoch == epoch and self.batch + 1 == batch
        if at and how == "interrupt":
            self.interrupted = True
        original(self)
        if at and how == "crash":
            raise Crash()

    monkeypatch.setattr(RunKeeper, "_after_train_batch", after)


# --- damaged checkpoints ---------------------------------------------------------------------------------------

def flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 8):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def nan_weights(path: Path) -> None:
    """A checkpoint whose checksum matches but whose weights hold NaN (as one written before the checks were)."""
    state = torch.load(path, weights_only=True)
    next(iter(state["model"].values())).view(-1)[:5] = float("nan")
    torch.save(state, path)
    path.with_name(path.name + ".sha256").write_text(f"{file_digest(path)}  {path.name}\n")


@pytest.mark.parametrize("damage", [flip_bytes, truncate, nan_weights])
def test_damaged_newest_checkpoint_falls_back_to_the_one_before(small, reference, tmp_path, monkeypatch, caplog,
                                                               damage):
    cfg = load_config("tiny", SMALL | {"epochs": 3})
    with monkeypatch.context() as m:
        stop_at(m, epoch=2, batch=5)
        assert pretrain(small, tmp_path / "run", cfg, direction="fwd")["stopped"] == "interrupted"
    kept = Checkpoints(tmp_path / "run" / "checkpoints", "fwd").complete()
    assert [p.name for p in kept] == ["fwd-e0002-b0000005.pt", "fwd-e0002-b0000000.pt"]  # the last two
    damage(kept[0])

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ulmfit"):
        resumed = pretrain(small, tmp_path / "run", cfg, direction="fwd", resume=True)
    assert resumed["stopped"] is None
    warnings = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
    assert len(warnings) == 1 and "fwd-e0002-b0000005.pt" in warnings[0], warnings
    # resumed from the epoch-end checkpoint, exactly: the RNG comes back at an epoch end too
    assert_same_weights(reference["fwd3"], tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_every_checkpoint_damaged_is_one_line_that_says_what_to_do(small, tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        stop_at(m, epoch=1, batch=3)
        pretrain(small, tmp_path / "run", load_config("tiny", SMALL | {"epochs": 2}), direction="fwd")
    folder = tmp_path / "run" / "checkpoints"
    for path in Checkpoints(folder, "fwd").complete():
        truncate(path)
    args = cli_args(tmp_path / "corpus", tmp_path / "run", "--direction", "fwd", "--epochs", "2")
    args[1] = str(small)
    line = one_error_line(runner.invoke(app, [*args, "--resume"]))
    assert f"no usable fwd checkpoint in {folder}" in line and "checksum mismatch" in line
    assert f"delete {folder} and run the same command without --resume" in line
    # doing what it says works
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert ModelDir.open(tmp_path / "run").directions == ["fwd"]


def test_checkpoint_cut_off_while_written_is_not_used(small, reference, tmp_path, monkeypatch):
    """A kill between writing a checkpoint and its checksum leaves a file without one: it is passed over."""
    cfg = load_config("tiny", SMALL | {"epochs": 3})
    with monkeypatch.context() as m:
        stop_at(m, epoch=2, batch=4)
        pretrain(small, tmp_path / "run", cfg, direction="fwd")
    folder = tmp_path / "run" / "checkpoints"
    newest = Checkpoints(folder, "fwd").complete()[0]
    newest.with_name(newest.name + ".sha256").unlink()  # as if killed before the checksum was written
    (folder / "fwd-e0002-b0000009.pt.tmp").write_bytes(b"half a checkpoint")  # killed inside torch.save
    pretrain(small, tmp_path / "run", cfg, direction="fwd", resume=True)
    assert_same_weights(reference["fwd3"], tmp_path / "run")


# --- non-finite loss and weights -------------------------------------------------------------------------------

def test_diverging_loss_stops_with_one_line_and_writes_no_model(small, tmp_path):
    out = tmp_path / "run"
    args = cli_args(small, out, "--direction", "fwd", "--epochs", "3", "--set", "lr=1000",
                    "--checkpoint-minutes", str(EVERY_BATCH))
    line = one_error_line(runner.invoke(app, args))
    assert "loss became NaN or infinite" in line and "lower lr" in line
    assert not (out / "fwd" / "model.safetensors").exists() and not (out / "config.json").exists()
    assert runner.invoke(app, ["info", str(out)]).exit_code == 1  # not a model
    for state_file in Checkpoints(out / "checkpoints", "fwd").complete():  # what was kept is finite
        state = torch.load(state_file, weights_only=True)
        assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_nan_weights_at_the_end_are_never_written(small, tmp_path, monkeypatch):
    original = RunKeeper.after_train

    def poison(self):  # after the last training batch, before validation and the final save
        original(self)
        if self.epoch == self.learn.n_epoch - 1:
            with torch.no_grad():
                next(self.learn.model.parameters()).view(-1)[0] = float("nan")

    monkeypatch.setattr(RunKeeper, "after_train", poison)
    with pytest.raises(UlmfitError, match=r"weights hold NaN or infinite values .* at the end of training"):
        pretrain(small, tmp_path / "run", load_config("tiny", SMALL | {"epochs": 2}), direction="fwd")
    assert not (tmp_path / "run" / "fwd" / "model.safetensors").exists()
    assert not (tmp_path / "run" / "config.json").exists()
    # the epoch-end checkpoint from before the NaN is still there to go back to
    assert Checkpoints(tmp_path / "run" / "checkpoints", "fwd").complete()


# --- kill -9 ---------------------------------------------------------------------------------------------------

def _crash_on_call(monkeypatch, target, name: str, n: int, only=lambda *args: True) -> None:
    """Make the n-th call of `target.name` (counting the calls whose arguments pass `only`) crash before it does
    anything."""
    original = getattr(target, name)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += only(*args)
        if calls["n"] == n and only(*args):
            raise Crash()
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapper)


CRASH_POINTS = {  # where, and how often checkpoints are written (minutes; 10: only at epoch ends here)
    "checkpoint written, not renamed": (lambda m: _crash_on_call(
        m, checkpoints_module.os, "replace", 2, only=lambda src, dst: str(dst).endswith(".pt")), 10),
    "checkpoint renamed, no checksum yet": (lambda m: _crash_on_call(m, checkpoints_module, "_write_durably", 1), 10),
    "fwd weights saved, metrics not": (lambda m: _crash_on_call(m, ModelDir, "write_metrics", 1), 10),
    "bwd mid-epoch": (lambda m: stop_at(m, epoch=1, batch=6, how="crash", direction="bwd"), EVERY_BATCH),
    "config.json being written": (lambda m: _crash_on_call(m, ModelDir, "finish", 1), 10),
}


@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_killed_at_any_point_resumes_to_the_same_weights(small, reference, tmp_path, monkeypatch, point):
    cfg = load_config("tiny", SMALL | {"epochs": 2})
    crash, minutes = CRASH_POINTS[point]
    with monkeypatch.context() as m:
        crash(m)
        with pytest.raises(Crash):
            pretrain(small, tmp_path / "run", cfg, checkpoint_minutes=minutes)
    assert not (tmp_path / "run" / "config.json").exists()
    if any(Checkpoints(tmp_path / "run" / "checkpoints", d).complete() for d in ("fwd", "bwd")):
        # else there is nothing to resume from, and the same command without --resume goes on
        with pytest.raises(UlmfitError, match="pass --resume"):
            pretrain(small, tmp_path / "run", cfg, checkpoint_minutes=minutes)
    pretrain(small, tmp_path / "run", cfg, resume=True, checkpoint_minutes=minutes)
    assert_same_weights(reference["both2"], tmp_path / "run", ("fwd", "bwd"))
    assert ModelDir.open(tmp_path / "run").metrics()["bwd"][-1]["valid_loss"] == \
        ModelDir.open(reference["both2"]).metrics()["bwd"][-1]["valid_loss"]


def test_sigkill_mid_epoch_then_resume_matches_and_a_second_run_is_refused(small, reference, tmp_path, caplog):
    """The real thing: `ulmfit pretrain` in a subprocess, a second run on its folder, kill -9, `--resume`."""
    out = tmp_path / "run"
    args = cli_args(small, out, "--direction", "fwd", "--epochs", "3", "--checkpoint-minutes", "0.0005")
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ulmfit", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)
    store = Checkpoints(out / "checkpoints", "fwd")
    try:
        wait_for(lambda: store.complete(), proc, "the first checkpoint", timeout=180)
        line = one_error_line(runner.invoke(app, args))
        assert f"in use by PID {proc.pid}" in line
        wait_for(lambda: any(p.name.startswith("fwd-e0001-") and not p.name.endswith("b0000000.pt")
                              for p in store.complete()), proc, "a checkpoint within epoch 1", timeout=180)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "config.json").exists()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ulmfit"):
        resumed = runner.invoke(app, [*args, "--resume"])  # the same command, here in this process
    assert resumed.exit_code == 0, resumed.output
    assert any(r.getMessage().startswith("resuming the fwd model at epoch") for r in caplog.records)
    assert_same_weights(reference["fwd3"], out)


# --- the run directory -----------------------------------------------------------------------------------------

def test_corpus_without_valid_text_then_the_same_command_after_preparing_again(tmp_path):
    corpus, out = tmp_path / "corpus", tmp_path / "run"
    prepare_corpus("en", corpus, sample=True, workers=1, options=PrepareOptions(valid_frac=0.0))
    args = cli_args(corpus, out, "--direction", "fwd")
    line = one_error_line(runner.invoke(app, args))
    assert "has no valid text" in line and "--valid-frac" in line
    prepare_corpus("en", corpus, sample=True, workers=1, options=PrepareOptions(valid_frac=0.2))
    again = runner.invoke(app, args)  # nothing left by the failed run stands in the way
    assert again.exit_code == 0, again.output


def test_valid_split_shorter_than_one_sequence(small, tmp_path):
    with pytest.raises(UlmfitError, match=r"only \d+ valid tokens, less than one sequence of bptt 400"):
        pretrain(small, tmp_path / "run", load_config("tiny", {"bs": 2, "bptt": 400}))
    assert not (tmp_path / "run").exists()


def test_a_failed_run_that_saved_nothing_blocks_nothing(small, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(UlmfitError, match="loss became NaN"):
        pretrain(small, out, load_config("tiny", SMALL | {"lr": 1000.0}), direction="fwd")
    assert (out / "run.json").is_file()
    result = runner.invoke(app, cli_args(small, out, "--direction", "fwd"))  # another lr, same folder
    assert result.exit_code == 0, result.output


def test_other_settings_on_a_run_with_saved_work_say_what_to_delete(small, tmp_path, monkeypatch):
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        stop_at(m, epoch=1, batch=2)
        pretrain(small, out, load_config("tiny", SMALL | {"epochs": 2}), direction="fwd")
    line = one_error_line(runner.invoke(app, cli_args(small, out, "--direction", "fwd", "--epochs", "3",
                                                      "--resume")))
    assert f"{out} holds a run with other values of epochs (checkpoints/fwd-e0001-b0000002.pt" in line
    assert f"delete {out} to start over" in line
    plain = one_error_line(runner.invoke(app, cli_args(small, out, "--direction", "fwd", "--epochs", "2")))
    assert "pass --resume to continue it" in plain and f"delete {out}" in plain


def test_bad_checkpoint_minutes(small, tmp_path):
    line = one_error_line(runner.invoke(app, cli_args(small, tmp_path / "run", "--checkpoint-minutes", "-1")))
    assert "--checkpoint-minutes must be 0" in line


def test_checkpoints_without_their_run_json_say_what_to_do(small, tmp_path, monkeypatch):
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        stop_at(m, epoch=1, batch=2)
        pretrain(small, out, load_config("tiny", SMALL | {"epochs": 2}), direction="fwd")
    (out / "run.json").write_text("{ damaged")
    line = one_error_line(runner.invoke(app, cli_args(small, out, "--direction", "fwd", "--epochs", "2",
                                                      "--resume")))
    assert "run.json is missing or damaged" in line and f"delete {out} to start over" in line
