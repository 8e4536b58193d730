"""ULMFiT fine-tuning end to end on CPU: tiny language models pretrained here, real task data from ../shared/data.

The language models are pretrained once per session (`conftest.py`) from the package's sample dumps (a thousand tokens, so they
know little); the tasks are small slices of IMDb, waimai and wisesight read through the task registry.
"""
from __future__ import annotations

import csv
import json
import random
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.benchmarks.sampling import task_slice

from ulmfit.benchmarks.classifier import Classifier, scores
from ulmfit.benchmarks.data import ClassificationData, LabelledTexts
from ulmfit.benchmarks.finetune import finetune, load_finetune_config
from ulmfit.benchmarks.tasks import get_task
from ulmfit.cli import app
from ulmfit.config import load_config
from ulmfit.errors import UlmfitError
from ulmfit.pretrain.modeldir import ModelDir
from ulmfit.pretrain.tokenizer import load_word_vocab

torch.set_num_threads(1)

# No training at all: the classifier holds the starting encoder as it came, which shows where it came from.
NO_EPOCHS = {"lm_epochs_frozen": 0, "lm_epochs": 0, "clas_epochs": (0, 0, 0, 0)}


@pytest.fixture(scope="module")
def imdb(shared_data) -> ClassificationData:
    # A few hundred reviews, cut to their first 300 characters to keep the CPU run short.
    return task_slice(shared_data, "en/imdb-sample", (160, 40, 60), chars=300)


@pytest.fixture(scope="module")
def imdb_classifier(en_sp_lm, imdb, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("imdb") / "clf"
    return finetune(en_sp_lm, imdb, out, load_finetune_config("tiny", {"clas_epochs": (1, 1, 1, 2)}))


# --- the whole path -----------------------------------------------------------------------------------------------

def test_classifier_directory(imdb_classifier, imdb, en_sp_lm):
    d = imdb_classifier
    for f in ("config.json", "spm.model", "fwd/model.safetensors", "bwd/model.safetensors", "labels.json",
              "metrics.json", "README.md"):
        assert (d / f).is_file(), f
    assert not d.with_name(d.name + ".partial").exists() and not (d / "work").exists()
    config = json.loads((d / "config.json").read_text())
    assert config["format"] == "ulmfit-classifier" and config["lang"] == "en"
    assert config["labels"] == ["neg", "pos"] == json.loads((d / "labels.json").read_text())
    assert config["directions"] == ["fwd", "bwd"] and config["multi_label"] is False
    assert config["lm"]["pretrained"] is True and config["lm"]["spec"] == str(en_sp_lm)
    assert config["tokenizer"] == json.loads((en_sp_lm / "config.json").read_text())["tokenizer"]
    assert (d / "spm.model").read_bytes() == (en_sp_lm / "spm.model").read_bytes()  # SentencePiece: no new vocabulary
    assert config["data"]["train"] == 160 and config["data"]["valid"] == 40 and config["data"]["test"] == 60
    assert set(config["metrics"]) == {"fwd", "bwd", "ensemble"}
    history = json.loads((d / "metrics.json").read_text())["history"]
    stages = Counter((r["stage"], r["direction"]) for r in history)
    for direction in ("fwd", "bwd"):
        assert stages[("lm-frozen", direction)] == 1 and stages[("lm", direction)] == 1
        assert [stages[(f"clas-{i}", direction)] for i in (1, 2, 3, 4)] == [1, 1, 1, 2]
    for row in history:
        assert row["train_loss"] > 0 and row["valid_loss"] > 0 and row["seconds"] >= 0
        assert ("perplexity" in row) == row["stage"].startswith("lm")
        assert ("macro_f1" in row) == row["stage"].startswith("clas")
    card = (d / "README.md").read_text()
    assert "library_name: ulmfit" in card and "text-classification" in card and "- en" in card


def test_predict_ensemble_is_mean_and_reload_is_identical(imdb_classifier, imdb):
    clf = Classifier.from_pretrained(imdb_classifier)
    texts = imdb.test.texts
    fwd = clf.predict_proba(texts, direction="fwd")
    bwd = clf.predict_proba(texts, direction="bwd")
    ens = clf.predict_proba(texts)
    assert ens.shape == (len(texts), 2)
    np.testing.assert_allclose(fwd.sum(1), 1, atol=1e-5)
    assert not np.array_equal(fwd, bwd)  # two different models
    assert np.array_equal(ens, (fwd + bwd) / 2)
    # batching and sorting by length do not change the answer, and the order of the texts is kept
    np.testing.assert_allclose(clf.predict_proba(texts, bs=7), ens, atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(texts[::-1])[::-1], ens, atol=1e-6)
    again = Classifier.from_pretrained(imdb_classifier)
    assert np.array_equal(again.predict_proba(texts), ens)
    assert clf.predict(texts[:3]) == [clf.labels[i] for i in ens[:3].argmax(1)]
    result = clf.evaluate(imdb.test)
    assert result["n"] == 60 and set(result) == {"fwd", "bwd", "ensemble", "n"}
    targets = np.array([clf.labels.index(y) for y in imdb.test.labels])
    assert result["ensemble"]["accuracy"] == pytest.approx((ens.argmax(1) == targets).mean())


def test_evaluate_record_fills_card(imdb_classifier, imdb, tmp_path):
    import shutil

    d = shutil.copytree(imdb_classifier, tmp_path / "clf")
    clf = Classifier.from_pretrained(d)
    with pytest.raises(UlmfitError, match="dataset_name"):
        clf.evaluate(imdb.test, record=True)
    result = clf.evaluate(imdb.test, metric="accuracy", record=True,
                          dataset={"dataset_name": "IMDb (sample)", "dataset_type": "stanfordnlp/imdb"})
    rows = json.loads((d / "config.json").read_text())["eval_results"]
    assert rows == [{"task_id": "text-classification", "task_name": "Text Classification",
                     "dataset_split": "test", "dataset_name": "IMDb (sample)", "dataset_type": "stanfordnlp/imdb",
                     "metric_type": "accuracy", "metric_name": "Accuracy",
                     "metric_value": round(result["ensemble"]["accuracy"], 6)}]
    from huggingface_hub import ModelCard

    card = ModelCard.load(d / "README.md")
    assert card.data.eval_results[0].metric_value == rows[0]["metric_value"]
    assert card.data.eval_results[0].dataset_type == "stanfordnlp/imdb"


def test_predict_cli_and_csv_round_trip(imdb_classifier, imdb, tmp_path):
    clf = Classifier.from_pretrained(imdb_classifier)
    src = tmp_path / "in.csv"
    texts = imdb.test.texts[:20]
    with src.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "review"])
        writer.writerows([[i, t] for i, t in enumerate(texts)] + [[99, "  "]])
    dest = tmp_path / "out.csv"
    result = CliRunner().invoke(app, ["predict", str(imdb_classifier), "--file", str(src), "--text-col", "review",
                                      "--out", str(dest)])
    assert result.exit_code == 0, result.output
    assert "20 rows classified, 1 empty rows skipped" in result.output
    rows = list(csv.DictReader(dest.open(encoding="utf-8")))
    assert [r["id"] for r in rows] == [str(i) for i in range(20)] + ["99"]
    assert [r["review"] for r in rows[:20]] == texts
    probs = np.array([[float(r["prob_neg"]), float(r["prob_pos"])] for r in rows[:20]])
    np.testing.assert_allclose(probs, clf.predict_proba(texts), atol=1e-6)
    assert [r["prediction"] for r in rows[:20]] == clf.predict(texts)
    assert rows[20]["prob_neg"] == rows[20]["prediction"] == ""

    result = CliRunner().invoke(app, ["predict", str(imdb_classifier), texts[0], "--direction", "fwd"])
    assert result.exit_code == 0, result.output
    label, shown, _ = result.output.strip().split("\t")
    p = clf.predict_proba([texts[0]], direction="fwd")[0]
    assert label == clf.labels[p.argmax()] and shown == f"neg={p[0]:.3f} pos={p[1]:.3f}"


def test_bad_input_to_predict(imdb_classifier, shared_data):
    clf = Classifier.from_pretrained(imdb_classifier)
    with pytest.raises(UlmfitError, match="1 of the 2 texts are empty"):
        clf.predict_proba(["a fine film", " "])
    with pytest.raises(UlmfitError, match="direction must be one of fwd, bwd, ensemble"):
        clf.predict_proba(["a fine film"], direction="left")
    thai = get_task("th/wisesight").load(shared_data).test.texts[:20]
    with pytest.raises(UlmfitError, match=r"unknown to the classifier's en tokenizer.*another language"):
        clf.predict_proba(thai)
    with pytest.raises(UlmfitError, match="this text"):
        clf.predict(thai[0])
    result = CliRunner().invoke(app, ["predict", str(imdb_classifier), thai[0]])
    assert result.exit_code == 1 and "error:" in result.output and "another language" in result.output
    lm_dir = json.loads((imdb_classifier / "config.json").read_text())["lm"]["spec"]
    with pytest.raises(UlmfitError, match="not a ulmfit classifier"):
        Classifier.from_pretrained(lm_dir)


# --- where the encoder comes from ---------------------------------------------------------------------------------

def test_sentencepiece_encoder_is_the_lm_or_random(en_sp_lm, imdb, tmp_path):
    cfg = load_finetune_config("tiny", NO_EPOCHS)
    lm = ModelDir.open(en_sp_lm).load_language_model("bwd")
    pre = finetune(en_sp_lm, imdb, tmp_path / "pre", cfg, directions="bwd")
    scratch = finetune(en_sp_lm, imdb, tmp_path / "scratch", cfg, directions="bwd", pretrained=False)
    emb = lambda d: load_file(d / "bwd/model.safetensors")["0.module.encoder.weight"]  # noqa: E731
    assert torch.equal(emb(pre), lm[0].encoder.weight.detach())
    assert emb(scratch).shape == emb(pre).shape and not torch.allclose(emb(scratch), emb(pre))
    config = json.loads((scratch / "config.json").read_text())
    assert config["lm"]["pretrained"] is False and config["directions"] == ["bwd"]
    assert "randomly initialised" in (scratch / "README.md").read_text()


def test_word_lm_is_remapped_into_the_task_vocabulary(en_word_lm, imdb, tmp_path):
    out = finetune(en_word_lm, imdb, tmp_path / "clf", load_finetune_config("tiny", NO_EPOCHS), directions="fwd")
    old_itos = load_word_vocab(en_word_lm / "vocab.json")
    new_itos = load_word_vocab(out / "vocab.json")
    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == len(new_itos) != len(old_itos)
    assert config["tokenizer"]["file"] == "vocab.json" and config["tokenizer"]["hash"].startswith("sha256:")
    lm = ModelDir.open(en_word_lm).load_language_model("fwd")
    old = lm[0].encoder.weight.detach()
    new = load_file(out / "fwd/model.safetensors")["0.module.encoder.weight"]
    shared = [t for t in new_itos if t in old_itos and not t.startswith("xxfake")]
    unseen = [t for t in new_itos if t not in old_itos]
    assert shared and unseen
    for t in shared:
        assert torch.equal(new[new_itos.index(t)], old[old_itos.index(t)])
    for t in unseen[:5]:
        assert torch.allclose(new[new_itos.index(t)], old.mean(0))
    coverage = config["lm"]["coverage"]
    assert coverage["tokens_found"] == len([t for t in shared if t not in old_itos[:9]])
    assert 0 < coverage["token_share"] < 1
    # the classifier reads text with the task vocabulary
    clf = Classifier.from_pretrained(out)
    assert clf.tokenizer.itos == new_itos and clf.predict_proba(imdb.test.texts[:4]).shape == (4, 2)


# --- learning -----------------------------------------------------------------------------------------------------

def test_learns_beyond_the_majority_class_on_waimai(zh_word_lm, shared_data, tmp_path, measured):
    data = task_slice(shared_data, "zh/waimai", (1000, 200, 300))
    out = finetune(zh_word_lm, data, tmp_path / "clf", load_finetune_config("tiny"), directions="fwd")
    result = Classifier.from_pretrained(out).evaluate(data.test)["ensemble"]
    majority = Counter(data.test.labels).most_common(1)[0][1] / len(data.test)
    measured("waimai tiny fwd test accuracy", result["accuracy"],
             f"majority class {majority:.3f}, macro-F1 {result['macro_f1']:.3f}, 1000 train reviews")
    assert result["accuracy"] > majority + 0.05
    assert result["macro_f1"] > 0.5  # the majority class alone scores macro-F1 below 0.45 here


def test_multi_label(en_sp_lm, tmp_path, measured):
    topics = {"sport": "football goal match team referee player".split(),
              "food": "pizza bread cheese soup dinner cook".split(),
              "music": "guitar song concert piano singer band".split()}
    filler = "the a was and very today we saw good nice it then".split()
    rng = random.Random(1)

    def make(n: int) -> LabelledTexts:
        texts, labels = [], []
        for _ in range(n):
            chosen = sorted(rng.sample(list(topics), rng.choice([0, 1, 1, 2])))
            words = rng.choices(filler, k=8) + [w for t in chosen for w in rng.sample(topics[t], 3)]
            rng.shuffle(words)
            texts.append(" ".join(words))
            labels.append(chosen)
        return LabelledTexts(texts, labels)

    data = ClassificationData("en", sorted(topics), make(300), valid=make(60), test=make(100), multi_label=True)
    out = finetune(en_sp_lm, data, tmp_path / "clf", load_finetune_config("tiny"))
    clf = Classifier.from_pretrained(out)
    probs = clf.predict_proba(data.test.texts)
    assert probs.shape == (100, 3) and ((probs >= 0) & (probs <= 1)).all()
    assert np.array_equal(probs, (clf.predict_proba(data.test.texts, direction="fwd")
                                  + clf.predict_proba(data.test.texts, direction="bwd")) / 2)
    predicted = clf.predict(data.test.texts)
    assert all(isinstance(p, list) and set(p) <= set(topics) for p in predicted)
    result = clf.evaluate(data.test)["ensemble"]
    every_label = scores(np.array([[t in y for t in clf.labels] for y in data.test.labels]),
                         np.ones((100, 3)), multi_label=True)["micro_f1"]  # the best constant answer
    measured("synthetic multi-label micro-F1", result["micro_f1"],
             f"exact match {result['accuracy']:.3f}; every label for every text: {every_label:.3f}")
    assert result["micro_f1"] > every_label + 0.15
    with pytest.raises(UlmfitError, match="label_smoothing"):
        finetune(en_sp_lm, data, tmp_path / "ls", load_finetune_config("tiny", {"label_smoothing": 0.1}))


def test_no_language_model_at_all(shared_data, tmp_path):
    data = task_slice(shared_data, "th/wisesight", (120, 30, 30), chars=200)
    with pytest.raises(UlmfitError, match="--no-pretrain"):
        finetune(None, data, tmp_path / "x", load_finetune_config("tiny"))
    out = finetune(None, data, tmp_path / "clf", load_finetune_config("tiny", {"clas_epochs": (1, 0, 0, 1)}),
                   directions="fwd", pretrained=False)
    config = json.loads((out / "config.json").read_text())
    assert config["lm"] == {"spec": None, "pretrained": False, "arch": load_config("tiny").arch()}
    assert config["tokenizer"]["type"] == "word" and config["arch"]["emb_sz"] == 64
    clf = Classifier.from_pretrained(out)
    assert clf.labels == data.labels and len(clf.predict(data.test.texts)) == 30


# --- the command line and bad input -------------------------------------------------------------------------------

def test_finetune_cli_from_csv(en_sp_lm, imdb, tmp_path):
    for name, split in (("train", imdb.train), ("valid", imdb.valid)):
        with (tmp_path / f"{name}.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["review", "sentiment"])
            writer.writerows(zip(split.texts, split.labels))
    out = tmp_path / "clf"
    args = ["finetune", "--lm", str(en_sp_lm), "--train", str(tmp_path / "train.csv"), "--valid",
            str(tmp_path / "valid.csv"), "--text-col", "review", "--label-col", "sentiment", "--config", "tiny",
            "--set", "lm_epochs=0", "--set", "clas_epochs=1,0,0,0", "--direction", "fwd", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "valid ensemble" in result.output and "test  ensemble" in result.output
    config = json.loads((out / "config.json").read_text())
    assert config["lang"] == "en" and config["directions"] == ["fwd"]
    assert config["finetune"]["clas_epochs"] == [1, 0, 0, 0]
    # the test split was carved from train (10%), the valid split is the file's
    assert config["data"]["valid"] == 40 and config["data"]["train"] == 144 and config["data"]["test"] == 16
    result = CliRunner().invoke(app, args)  # the same command again keeps the classifier it made
    assert result.exit_code == 0 and "valid ensemble" in result.output
    result = CliRunner().invoke(app, args + ["--set", "clas_bs=8"])  # other settings: the directory is not theirs
    assert result.exit_code == 1 and "already exists" in result.output
    result = CliRunner().invoke(app, args[:-1] + [str(tmp_path / "other"), "--set", "clas_lr=1"])
    assert result.exit_code == 1 and "clas_lrs" in result.output  # did you mean ...


def test_bad_finetune_input(en_sp_lm, imdb, tmp_path):
    cfg = load_finetune_config("tiny", NO_EPOCHS)
    with pytest.raises(UlmfitError, match="is for 'en' but the task is in 'th'"):
        finetune(en_sp_lm, replace(imdb, lang="th"), tmp_path / "a", cfg)
    with pytest.raises(UlmfitError, match="direction must be fwd, bwd or both"):
        finetune(en_sp_lm, imdb, tmp_path / "b", cfg, directions="up")
    with pytest.raises(UlmfitError, match="as long as each other"):
        load_finetune_config("tiny", {"clas_lrs": (1e-2, 1e-3)})
    one_class = replace(imdb, train=LabelledTexts(imdb.train.texts, ["pos"] * len(imdb.train)))
    with pytest.raises(UlmfitError, match="same label"):
        finetune(en_sp_lm, one_class, tmp_path / "c", cfg)
    assert not any(tmp_path.iterdir())  # nothing half-written left behind


def test_scores_against_hand_counts():
    # single-label: 3 classes, truth [0 0 1 2], predictions [0 1 1 1]
    probs = np.eye(3)[[0, 1, 1, 1]] * 0.8 + 0.1
    got = scores(np.array([0, 0, 1, 2]), probs, multi_label=False)
    # class F1: 0 -> 2/3, 1 -> 2*1/(2+2) = 1/2, 2 -> 0
    assert got["accuracy"] == pytest.approx(0.5) and got["micro_f1"] == pytest.approx(0.5)
    assert got["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    # multi-label: exact match 1 of 2; tp 2, fp 1, fn 1 -> micro 4/6
    truth = np.array([[1, 0, 1], [0, 1, 0]])
    probs = np.array([[0.9, 0.1, 0.7], [0.2, 0.4, 0.6]])
    got = scores(truth, probs, multi_label=True)
    assert got["accuracy"] == 0.5 and got["micro_f1"] == pytest.approx(4 / 6)
    assert got["macro_f1"] == pytest.approx((1 + 0 + 2 / 3) / 3)


def test_a_language_model_with_one_direction_fine_tunes_that_one(en_sp_lm, imdb, tmp_path, caplog):
    lm = tmp_path / "fwd-only"
    shutil.copytree(en_sp_lm, lm)
    shutil.rmtree(lm / "bwd")
    config = json.loads((lm / "config.json").read_text())
    (lm / "config.json").write_text(json.dumps(config | {"directions": ["fwd"]}))
    cfg = load_finetune_config("tiny", NO_EPOCHS)
    out = finetune(lm, imdb, tmp_path / "clf", cfg)  # both asked for, by default
    assert ModelDir.open(out).directions == ["fwd"] and "has only fwd: training fwd only" in caplog.text
    with pytest.raises(UlmfitError, match="has no bwd model .*ask for --direction fwd"):
        finetune(lm, imdb, tmp_path / "clf-bwd", cfg, directions="bwd")
    assert not (tmp_path / "clf-bwd").exists()


@pytest.mark.parametrize("setting, message", [
    ("clas_lrs=0.02,0,0.01,0.01", r"'clas_lrs' must be above 0, not \(0.02, 0.0, 0.01, 0.01\)"),
    ("clas_bs=0", "'clas_bs' must be at least 1"),
    ("label_smoothing=1", "'label_smoothing' must be at least 0 and below 1"),
    ("lm_epochs=-1", "'lm_epochs' must be at least 0"),
    ("lr_decay=0", "'lr_decay' must be above 0"),
])
def test_finetune_config_values_out_of_range_are_refused(setting, message):
    with pytest.raises(UlmfitError, match=message):
        load_finetune_config("tiny", [setting])
