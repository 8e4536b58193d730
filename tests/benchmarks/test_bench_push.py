"""`ulmfit bench --hf-dataset ... --push-to ORG` end to end: a task from a dataset `datasets` saved, fine-tuned, scored,
published to the local Hub with its card, and loaded back by name in a fresh cache."""
from __future__ import annotations

import json

import pytest
from huggingface_hub import ModelCard, constants
from typer.testing import CliRunner

import ulmfit
from tests.benchmarks.test_hf_tasks import dataset_dict, datasets_cache  # noqa: F401  (an autouse fixture)
from ulmfit.benchmarks.classifier import Classifier
from ulmfit.cli import app

QUICK = ["lm_epochs=1", "clas_epochs=1,0,0,1", "clas_bs=8", "lm_bs=4", "lm_bptt=8"]
REPO = "tester/en-film-reviews-ulmfit"


@pytest.fixture
def pushed(hub, en_sp_lm, tmp_path):
    dataset_dict().save_to_disk(tmp_path / "film-reviews")
    out = tmp_path / "bench"
    result = CliRunner().invoke(app, [
        "bench", "--hf-dataset", str(tmp_path / "film-reviews"), "--text-col", "review", "--label-col", "stars",
        "--name", "Film reviews", "--lang", "en", "--lm", str(en_sp_lm), "--config", "tiny",
        *[a for kv in QUICK for a in ("--set", kv)], "--push-to", "tester", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_bench_pushes_each_classifier_with_its_card(pushed, hub, tmp_path):
    out, output = pushed
    row = json.loads((out / "results.json").read_text())["rows"][0]
    commit = hub.state.resolve(hub.state.load(REPO), "main")
    assert row["task"] == "en/film-reviews" and row["hub"] == f"{REPO}@{commit}"
    assert f"hf-hub:{REPO}@{commit}" in output

    card = ModelCard.load(REPO)  # the card as the Hub serves it
    assert card.data.pipeline_tag == "text-classification" and card.data.library_name == "ulmfit"
    assert {"ulmfit", "awd-lstm", "fastai", "en", "text-classification"} <= set(card.data.tags)
    results = {(r.dataset_name, r.dataset_split, r.metric_name): r.metric_value for r in card.data.eval_results}
    assert results[("Film reviews", "test", "Accuracy")] == pytest.approx(row["ensemble"], abs=1e-4)
    assert results[("Film reviews", "test", "accuracy (forward)")] == pytest.approx(row["fwd"], abs=1e-4)
    assert "| en/film-reviews | accuracy |" in card.text  # the benchmark table row
    assert f'Classifier.from_pretrained("{REPO}")' in card.text

    # A fresh HF_HOME: the repository loads by its name alone, and predicts as the classifier the run wrote.
    hub.monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "fresh-home" / "hub"))
    clf = ulmfit.from_pretrained(REPO)
    assert isinstance(clf, Classifier) and clf.model_dir.path.is_relative_to(tmp_path / "fresh-home")
    local = Classifier.from_pretrained(out / row["classifier"])
    texts = ["a fine film", "poor acting"]
    assert (clf.predict_proba(texts) == local.predict_proba(texts)).all()

    # A second run with the same settings skips the finished task and does not push it again.
    pushes = [r for r in hub.state.requests if r[0] == "POST" and "/commit/" in r[1]]
    again = CliRunner().invoke(app, ["bench", "--hf-dataset", str(tmp_path / "film-reviews"), "--text-col",
                                     "review", "--label-col", "stars", "--name", "Film reviews", "--lang", "en",
                                     "--lm", row["lm"], "--config", "tiny", *[a for kv in QUICK for a in ("--set", kv)],
                                     "--push-to", "tester", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert [r for r in hub.state.requests if r[0] == "POST" and "/commit/" in r[1]] == pushes


@pytest.mark.slow
def test_every_snippet_of_the_classifier_card_runs(pushed, hub, tmp_path):
    runs = hub.run_card(ModelCard.load(REPO).text, tmp_path)
    assert len(runs) == 2 and all("neg" in r.stdout or "pos" in r.stdout for r in runs)


def test_push_to_is_checked_before_any_training(hub, en_sp_lm, tmp_path):
    hub.monkeypatch.delenv("HF_TOKEN")
    args = ["bench", "--tasks", "en/trec6", "--lm", str(en_sp_lm), "--out", str(tmp_path / "b")]
    no_token = CliRunner().invoke(app, [*args, "--push-to", "tester"])
    assert no_token.exit_code == 1 and "--push-to needs a Hugging Face token" in no_token.output
    bad = CliRunner().invoke(app, [*args, "--push-to", "tester/x"])
    assert bad.exit_code == 1 and "the Hub user or organisation" in bad.output
    assert not (tmp_path / "b").exists()
