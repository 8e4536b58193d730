"""Faults during `ulmfit finetune` and `ulmfit bench`, made to happen: kill -9 at a moment in training, a second run
on the same folder, the same command after a run that finished, a run that failed on a bad column.

The data is made here: short labelled texts in which a few words tell the class (nothing to download), with the
session's tiny English language model. On the CPU with one thread both commands are deterministic, so a re-run
after a kill must give the very same weights and scores as a run that was never stopped.
"""
from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.faults import kill_when
from ulmfit.cli import app
from ulmfit.files import output_lock

torch.set_num_threads(1)
runner = CliRunner()
QUICK = ["--config", "tiny", "--direction", "fwd", "--set", "lm_epochs=1", "--set", "clas_epochs=1,0,0,2"]
ENV = os.environ | {"OMP_NUM_THREADS": "1"}


def write_task(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    words = {"pos": "good great lovely tasty fast warm kind happy".split(),
             "neg": "bad awful slow cold rude dull sad poor".split()}
    common = "the food was and service place staff it very really quite our table meal time".split()
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "stars"])
        for i in range(n):
            label = ("neg", "pos")[i % 2]
            text = [rng.choice(common) for _ in range(14)] + [rng.choice(words[label]) for _ in range(3)]
            rng.shuffle(text)
            writer.writerow([" ".join(text), label])
    return path


def one_error_line(result) -> str:
    assert result.exit_code != 0, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def scores_printed(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(("valid ", "test "))]


def finetune_args(lm: Path, train: Path, out: Path) -> list[str]:
    return ["finetune", "--lm", str(lm), "--train", str(train), "--text-col", "review", "--label-col", "stars",
            *QUICK, "--out", str(out)]


def weights(folder: Path) -> dict:
    return load_file(folder / "fwd" / "model.safetensors")


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --- finetune ---------------------------------------------------------------------------------------------------

def test_finetune_same_command_keeps_a_finished_classifier(en_sp_lm, tmp_path):
    """A kill after the classifier was renamed into place (while the CLI scores the test split) leaves a finished
    folder: the same command keeps it instead of refusing it."""
    train = write_task(tmp_path / "train.csv", 80, seed=1)
    out = tmp_path / "clf"
    args = finetune_args(en_sp_lm, train, out)
    args[args.index("clas_epochs=1,0,0,2")] = "clas_epochs=0,0,0,0"  # no training needed for this
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    stamp = (out / "fwd" / "model.safetensors").stat().st_mtime_ns
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert scores_printed(again.output) == scores_printed(first.output)  # the same classifier
    assert (out / "fwd" / "model.safetensors").stat().st_mtime_ns == stamp
    other = runner.invoke(app, [*args, "--set", "clas_bs=8"])  # other settings: the folder is not theirs
    assert "already exists" in one_error_line(other)


def test_finetune_second_run_on_the_same_folder_is_refused(en_sp_lm, tmp_path):
    train = write_task(tmp_path / "train.csv", 40, seed=1)
    out = tmp_path / "clf"
    with output_lock(out):  # a run in progress (the lock is per open file, so this process counts as another)
        line = one_error_line(runner.invoke(app, finetune_args(en_sp_lm, train, out)))
    assert f"in use by PID {os.getpid()}" in line
    assert not out.exists() and not out.with_name("clf.partial").exists()


@pytest.mark.slow
def test_finetune_sigkill_then_the_same_command_gives_the_same_classifier(en_sp_lm, tmp_path):
    train = write_task(tmp_path / "train.csv", 120, seed=2)
    whole = runner.invoke(app, finetune_args(en_sp_lm, train, tmp_path / "whole"))
    assert whole.exit_code == 0, whole.output

    out = tmp_path / "clf"
    args = finetune_args(en_sp_lm, train, out)
    proc = subprocess.Popen([sys.executable, "-m", "ulmfit", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    partial = out.with_name("clf.partial")
    kill_when(proc, lambda: (partial / "work" / "lm-train.bin").is_file(), "language-model fine-tuning")
    assert partial.exists() and not out.exists()  # what a kill leaves
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert not partial.exists()
    assert_same(weights(tmp_path / "whole"), weights(out))
    assert scores_printed(again.output) == scores_printed(whole.output)


# --- bench ------------------------------------------------------------------------------------------------------

def test_bench_failing_on_a_bad_column_leaves_no_output_folder(en_sp_lm, tmp_path):
    train = write_task(tmp_path / "train.csv", 40, seed=1)
    out = tmp_path / "bench"
    result = runner.invoke(app, ["bench", "--train", str(train), "--lang", "en", "--lm", str(en_sp_lm),
                                 "--text-col", "text", "--config", "tiny", "--out", str(out)])
    assert "has no column 'text'" in one_error_line(result)
    assert not out.exists() and not (tmp_path / ".bench.lock").exists()


def test_bench_second_run_on_the_same_folder_is_refused(en_sp_lm, tmp_path):
    train = write_task(tmp_path / "train.csv", 40, seed=1)
    out = tmp_path / "bench"
    out.mkdir()
    with output_lock(out):
        result = runner.invoke(app, ["bench", "--train", str(train), "--lang", "en", "--lm", str(en_sp_lm),
                                     "--text-col", "review", "--label-col", "stars", "--out", str(out)])
    assert f"in use by PID {os.getpid()}" in one_error_line(result)
    assert not any(out.iterdir())


@pytest.mark.slow
def test_bench_sigkill_then_the_same_command_goes_on_to_the_same_table(en_sp_lm, tmp_path):
    specs = []
    for i in (1, 2):
        write_task(tmp_path / f"task{i}.csv", 100, seed=10 + i)
        spec = {"id": f"my/task{i}", "name": f"task {i}", "lang": "en", "train": f"task{i}.csv",
                "text_col": "review", "label_col": "stars"}
        (tmp_path / f"task{i}.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
        specs += ["--task-file", str(tmp_path / f"task{i}.yaml")]

    def args(out: Path) -> list[str]:
        return ["bench", *specs, "--lm", str(en_sp_lm), *QUICK, "--out", str(out)]

    whole = runner.invoke(app, args(tmp_path / "whole"))
    assert whole.exit_code == 0, whole.output

    out = tmp_path / "bench"
    proc = subprocess.Popen([sys.executable, "-m", "ulmfit", *args(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    second = out / "classifiers" / "my-task2.partial" / "work" / "lm-train.bin"
    kill_when(proc, second.is_file, "the second task's training")
    first_task = out / "classifiers" / "my-task1" / "fwd" / "model.safetensors"
    stamp = first_task.stat().st_mtime_ns
    again = runner.invoke(app, args(out))
    assert again.exit_code == 0, again.output
    assert first_task.stat().st_mtime_ns == stamp  # the finished task was kept, not redone

    def scores(folder: Path) -> list[dict]:
        rows = json.loads((folder / "results.json").read_text())["rows"]
        return [{k: r[k] for k in ("task", "n_train", "n_test", "fwd", "ensemble")} for r in rows]

    assert scores(out) == scores(tmp_path / "whole")
    for task in ("my-task1", "my-task2"):
        assert_same(weights(tmp_path / "whole" / "classifiers" / task), weights(out / "classifiers" / task))
