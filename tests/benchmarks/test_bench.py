"""`ulmfit bench`: tasks from files and from the registry, result tables, learning curves, re-runs, bad input."""
from __future__ import annotations

import csv
import json
import struct

import pytest
import yaml
from typer.testing import CliRunner

from ulmfit.benchmarks.bench import BenchSettings, markdown_table, run_bench
from ulmfit.benchmarks.classifier import Classifier
from ulmfit.benchmarks.finetune import load_finetune_config
from ulmfit.benchmarks.tasks import get_task, task_from_file
from ulmfit.cli import app
from ulmfit.errors import UlmfitError
from ulmfit.zoo.hub import model_card
from tests.benchmarks.sampling import task_slice

runner = CliRunner()
# a few short cycles: these tests check the runner, test_finetune.py checks that the recipe learns
QUICK = ["lm_epochs=1", "clas_epochs=1,0,0,1", "clas_bs=32"]


def write_csv(path, split, text_col="text", label_col="label") -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([text_col, label_col])
        writer.writerows(zip(split.texts, split.labels))


@pytest.fixture(scope="module")
def task_files(shared_data, tmp_path_factory):
    """Two tasks defined only by files: TREC questions (a YAML spec) and IMDb reviews (plain CSVs)."""
    root = tmp_path_factory.mktemp("task-files")
    trec = task_slice(shared_data, "en/trec6", (120, 30, 40))
    for name, split in (("train", trec.train), ("valid", trec.valid), ("test", trec.test)):
        write_csv(root / f"trec-{name}.csv", split, "question", "type")
    spec = {"id": "my/trec", "name": "TREC sample", "lang": "en", "train": "trec-train.csv",
            "valid": "trec-valid.csv", "test": "trec-test.csv", "text_col": "question", "label_col": "type",
            "published_ulmfit": {"name": "ULMFiT", "value": 0.964, "source": "Howard & Ruder 2018"}}
    (root / "trec.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    imdb = task_slice(shared_data, "en/imdb-sample", (80, 20, 30), chars=250)
    write_csv(root / "imdb-train.csv", imdb.train)
    write_csv(root / "imdb-test.csv", imdb.test)
    return root


@pytest.fixture(scope="module")
def bench_run(task_files, en_sp_lm, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "out"
    args = ["bench", "--task-file", str(task_files / "trec.yaml"), "--train", str(task_files / "imdb-train.csv"),
            "--test", str(task_files / "imdb-test.csv"), "--lang", "en", "--lm", str(en_sp_lm),
            "--config", "tiny", *[a for kv in QUICK for a in ("--set", kv)], "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return out, args, result.output


def test_bench_writes_tables_and_plot(bench_run):
    out, _, output = bench_run
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    assert [r["task"] for r in rows] == ["my/trec", "en/imdb"]
    assert results["settings"]["pretrained"] is True and results["settings"]["labels_limit"] is None
    trec = rows[0]
    assert trec["n_train"] == 120 and trec["n_test"] == 40 and trec["metric"] == "accuracy"
    assert trec["published_ulmfit"] == 0.964 and trec["published_best"] is None
    for row in rows:
        assert all(0 <= row[d] <= 1 for d in ("fwd", "bwd", "ensemble")) and row["seconds"] > 0
    with (out / "results.csv").open(encoding="utf-8") as f:
        assert [r["task"] for r in csv.DictReader(f)] == ["my/trec", "en/imdb"]
    table = (out / "results.md").read_text()
    assert "| my/trec | en | 120 | accuracy |" in table and "96.40" in table
    assert "| my/trec | en | 120 | accuracy |" in output  # the CLI prints the table
    png = (out / "learning_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width == 1000 and height == 600  # two panels per task, two tasks


def test_bench_scores_match_the_saved_classifiers(bench_run, task_files):
    out, _, _ = bench_run
    row = json.loads((out / "results.json").read_text())["rows"][0]
    classifier = Classifier.from_pretrained(out / row["classifier"])
    test = task_from_file(task_files / "trec.yaml").load().test
    scores = classifier.evaluate(test, "accuracy")
    assert [round(scores[d]["accuracy"], 4) for d in ("fwd", "bwd", "ensemble")] == \
        [row["fwd"], row["bwd"], row["ensemble"]]
    recorded = {r["metric_type"]: r["metric_value"] for r in classifier.config["eval_results"]}
    assert round(recorded["accuracy"], 4) == row["ensemble"]  # what `ulmfit push` puts in the model card
    info = runner.invoke(app, ["info", str(out / row["classifier"])])
    assert info.exit_code == 0 and yaml.safe_load(info.output)["labels"] == classifier.labels


def test_results_go_into_the_language_models_card(bench_run, en_sp_lm):
    out, _, _ = bench_run
    rows = json.loads((out / "results.json").read_text())["rows"]
    card = model_card(en_sp_lm, "org/en-tiny", bench_results=out / "results.json")
    results = {(r.dataset_type, r.metric_name): r.metric_value for r in card.data.eval_results}
    for row in rows:
        assert results[(row["dataset"], "accuracy (ensemble)")] == row["ensemble"]


def test_rerun_keeps_finished_tasks_and_refuses_other_settings(bench_run):
    out, args, _ = bench_run
    before = {p: p.stat().st_mtime_ns for p in (out / "classifiers").rglob("*.safetensors")}
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in (out / "classifiers").rglob("*.safetensors")} == before
    other = runner.invoke(app, [*args, "--labels-limit", "50"])
    assert other.exit_code == 1 and "other settings" in other.output


def test_labels_limit_and_no_pretrain(shared_data, tmp_path):
    """The ablation runs the same stages without a pretrained model; the limit samples the training labels."""
    cfg = load_finetune_config("tiny", QUICK)
    settings = BenchSettings(lms={}, config=cfg, pretrained=False, labels_limit=60, directions=("fwd",))
    task = get_task("en/trec6")
    small = task_slice(shared_data, "en/trec6", (300, 40, 50))
    rows = run_bench([_Fixed(task, small)], settings, tmp_path / "out", data_dir=shared_data)
    row = rows[0]
    assert row["n_train"] == 60 and row["n_train_available"] == 300 and row["pretrained"] is False
    assert row["bwd"] is None and row["ensemble"] == row["fwd"]  # one direction: the ensemble is that direction
    config = json.loads((tmp_path / "out" / row["classifier"] / "config.json").read_text())
    assert config["lm"]["pretrained"] is False and config["data"]["train"] == 60
    assert "no pretraining" in markdown_table(rows, settings)


class _Fixed:
    """A registered task whose `load` gives a given slice of its data (a small run of a real task)."""

    def __init__(self, task, data):
        self._task, self._data = task, data

    def __getattr__(self, name):
        return getattr(self._task, name)

    def load(self, data_dir=None):
        return self._data


def test_bad_requests(en_sp_lm, tmp_path):
    unknown = runner.invoke(app, ["bench", "--tasks", "en/trec7", "--lm", str(en_sp_lm), "--out", str(tmp_path)])
    assert unknown.exit_code == 1 and "en/trec6" in unknown.output
    none = runner.invoke(app, ["bench", "--lm", str(en_sp_lm), "--out", str(tmp_path)])
    assert none.exit_code == 1 and "--tasks" in none.output
    wrong_lang = runner.invoke(app, ["bench", "--tasks", "en/trec6,th/wisesight", "--lm", f"en={en_sp_lm}",
                                     "--out", str(tmp_path / "x")])
    assert wrong_lang.exit_code == 1 and "add --lm th=MODEL" in wrong_lang.output
    assert not (tmp_path / "x").exists()  # refused before anything was written
    settings = BenchSettings(lms={"*": str(en_sp_lm)}, config=load_finetune_config("tiny"))
    with pytest.raises(UlmfitError, match="is for 'en' but the task th/wisesight is in 'th'"):
        run_bench([get_task("th/wisesight")], settings, tmp_path / "y", data_dir=tmp_path / "no-data-needed")


def test_tasks_lists_the_registry():
    result = runner.invoke(app, ["tasks", "--lang", "th"])
    assert result.exit_code == 0
    assert "th/wisesight" in result.output and "74.19" in result.output and "en/trec6" not in result.output
