"""Hostile input to `predict` and `finetune` (issue 13): damaged classifiers, files in other encodings, huge cells
and texts, and paths that name the wrong kind of thing. Each gets one `error:` line (or is read as it should be).

The classifier is fine-tuned once from the session's tiny English language model on made-up texts, without
training epochs: these tests look at input handling, not at what the classifier learnt.
"""
from __future__ import annotations

import csv
import json
import logging
import random
import shutil
import time

import pytest
import torch
from typer.testing import CliRunner

from tests.faults import assert_one_line_error
from ulmfit.benchmarks.classifier import Classifier, encode_head, predict_csv
from ulmfit.benchmarks.data import ClassificationData, LabelledTexts
from ulmfit.benchmarks.finetune import finetune, load_finetune_config
from ulmfit.benchmarks.tasks import task_from_csv, task_from_file
from ulmfit.cli import app
from ulmfit.errors import UlmfitError

torch.set_num_threads(1)
runner = CliRunner()
NO_EPOCHS = {"lm_epochs_frozen": 0, "lm_epochs": 0, "clas_epochs": (0, 0, 0, 0)}
WORDS = "the film was and it is a story of the river in the city with people".split()


def made_up(n: int, seed: int = 0) -> LabelledTexts:
    rng = random.Random(seed)
    good, bad = "good fine great lovely".split(), "bad awful poor dull".split()
    texts = [" ".join(rng.choice(WORDS + (good if i % 2 else bad) * 2) for _ in range(20)) for i in range(n)]
    return LabelledTexts(texts, ["pos" if i % 2 else "neg" for i in range(n)])


def long_text(chars: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS + ["good", "Great", "AWFUL!!!"]) for _ in range(chars // 3))[:chars]


@pytest.fixture(scope="module")
def classifier_dir(en_sp_lm, tmp_path_factory):
    out = tmp_path_factory.mktemp("clf") / "clf"
    return finetune(en_sp_lm, ClassificationData("en", [], made_up(80)), out, load_finetune_config("tiny", NO_EPOCHS))


@pytest.fixture
def clf_copy(classifier_dir, tmp_path):
    return shutil.copytree(classifier_dir, tmp_path / "clf")


def _write_csv(path, rows, encoding="utf-8"):
    with path.open("w", newline="", encoding=encoding) as f:
        csv.writer(f).writerows(rows)
    return path


# --- damaged classifier directories -------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, fragment", [
    ("labels", [], "labels = []"),
    ("labels", "neg,pos", "labels = 'neg,pos'"),
    ("labels", [0, 1], "labels = [0, 1]"),
    ("labels", ["neg", "neg"], "distinct"),
    ("multi_label", "no", "multi_label = 'no'"),
    ("head", 72, "head = 72"),
    ("head.seq_len", 0, "head.seq_len = 0"),
    ("head.max_len", -1440, "head.max_len = -1440"),
    ("head.drop_mult", "half", "head.drop_mult = 'half'"),
    ("head.max_tokens_per_text", 10 ** 12, "head.max_tokens_per_text"),
    ("arch.tie_weights", True, "arch.tie_weights = True"),
    ("arch.n_layers", 10 ** 6, "arch.n_layers = 1000000"),
    ("data.unknown_rate", "high", "data.unknown_rate = 'high'"),
    ("format_version", "1", "format_version = '1'"),
    ("directions", ["fwd", "fwd"], "directions"),
])
def test_absurd_classifier_config(clf_copy, field, value, fragment):
    config = json.loads((clf_copy / "config.json").read_text())
    *parents, key = field.split(".")
    section = config
    for name in parents:
        section = section[name]
    section[key] = value
    (clf_copy / "config.json").write_text(json.dumps(config))
    assert_one_line_error(runner.invoke(app, ["predict", str(clf_copy), "a good film"]), str(clf_copy), fragment)


def test_classifier_weights_for_other_labels(clf_copy):
    config = json.loads((clf_copy / "config.json").read_text())
    config["labels"] = ["neg", "neu", "pos"]  # the weights have two outputs
    (clf_copy / "config.json").write_text(json.dumps(config))
    assert_one_line_error(runner.invoke(app, ["predict", str(clf_copy), "a good film"]),
                          "fwd/model.safetensors does not match", "has the shape (2, 50)", "call for (3, 50)")


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_classifier_weights_missing_or_cut_short(clf_copy, damage):
    path = clf_copy / "bwd" / "model.safetensors"
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:-100])
    line = assert_one_line_error(runner.invoke(app, ["predict", str(clf_copy), "a good film"]), str(clf_copy))
    assert ("lacks bwd/model.safetensors" if damage == "missing" else "not a readable safetensors file") in line


# --- predict: files and texts -------------------------------------------------------------------------------------

def test_predict_file_in_another_encoding(classifier_dir, tmp_path):
    rows = [["id", "text"]] + [[i, t] for i, t in enumerate(made_up(30).texts)] + [[30, "un café très good"]]
    src = _write_csv(tmp_path / "in.csv", rows, "latin-1")
    dest = tmp_path / "out.csv"
    offset = src.read_bytes().index("é".encode("latin-1"))
    line = assert_one_line_error(runner.invoke(app, ["predict", str(classifier_dir), "--file", str(src), "--out",
                                                     str(dest)]),
                                 f"{src} is not valid utf-8 (byte 0xe9 at offset {offset:,})",
                                 "give its encoding with --encoding (for example latin-1")
    assert "encoding:" not in line and not dest.exists() and not dest.with_name("out.csv.tmp").exists()
    result = runner.invoke(app, ["predict", str(classifier_dir), "--file", str(src), "--out", str(dest),
                                 "--encoding", "latin-1"])
    assert result.exit_code == 0, result.output
    out = list(csv.DictReader(dest.open(encoding="utf-8")))
    assert out[-1]["text"] == "un café très good" and out[-1]["prediction"] in ("neg", "pos")
    assert_one_line_error(runner.invoke(app, ["predict", str(classifier_dir), "--file", str(src), "--out",
                                              str(dest), "--encoding", "klingon"]), "'klingon' is not a known")


def test_predict_file_that_is_a_directory(classifier_dir, tmp_path):
    assert_one_line_error(runner.invoke(app, ["predict", str(classifier_dir), "--file", str(tmp_path), "--out",
                                              str(tmp_path / "out.csv")]), f"{tmp_path} is a directory")


def test_predict_file_with_cells_beyond_the_csv_field_limit(classifier_dir, tmp_path, caplog):
    big = long_text(300_000)  # Python's csv module refuses cells over 131,072 characters unless told otherwise
    src = _write_csv(tmp_path / "in.csv", [["text", "note"], [big, "x" * 200_000], ["a good film", "y"]])
    dest = tmp_path / "out.csv"
    with caplog.at_level(logging.WARNING, logger="ulmfit"):
        result = runner.invoke(app, ["predict", str(classifier_dir), "--file", str(src), "--out", str(dest)])
    assert result.exit_code == 0, result.output
    assert "2 rows classified" in result.output
    assert "1 of the 2 texts are longer than 5000 tokens" in caplog.text
    rows = list(csv.DictReader(dest.open(encoding="utf-8")))
    assert rows[0]["text"] == big and rows[0]["note"] == "x" * 200_000


def test_five_megabyte_text_is_capped_quickly(classifier_dir, caplog):
    text = long_text(5_000_000)
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="ulmfit"):
        result = runner.invoke(app, ["predict", str(classifier_dir), text, "a good film"])
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - start < 60
    assert "1 of the 2 texts are longer than 5000 tokens: only their first 5000 are read" in caplog.text
    clf = Classifier.from_pretrained(classifier_dir, max_tokens=300)
    assert [len(ids) for ids in clf.encode([text, "a good film"])] == [300, len(clf.tokenizer.encode("a good film"))]
    with pytest.raises(UlmfitError, match="at least 2"):
        Classifier.from_pretrained(classifier_dir, max_tokens=0)


def test_the_head_of_a_long_text_is_what_the_whole_text_begins_with(classifier_dir):
    tokenizer = Classifier.from_pretrained(classifier_dir).tokenizer
    text = long_text(60_000, seed=3)
    whole = tokenizer.encode(text)
    for n in (2, 100, 1000, len(whole) - 1):
        assert encode_head(tokenizer, text, n) == (whole[:n], True)
    assert encode_head(tokenizer, text, len(whole)) == (whole, False)
    unspaced = text.replace(" ", "")  # no whitespace to cut at
    assert encode_head(tokenizer, unspaced, 500)[0] == tokenizer.encode(unspaced)[:500]


def test_text_that_is_not_utf8_on_the_command_line(classifier_dir):
    # bytes that are not UTF-8 in argv reach Python as lone surrogates
    assert_one_line_error(runner.invoke(app, ["predict", str(classifier_dir), "caf\udce9 good"]),
                          "1 of the 1 texts are not valid UTF-8")


def test_predict_csv_function_leaves_nothing_on_a_bad_file(classifier_dir, tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes(b"text\n" + b"fine text\n" * 5000 + b"caf\xe9\n")
    clf = Classifier.from_pretrained(classifier_dir)
    with pytest.raises(UlmfitError, match=r"at offset 50,008\): give its encoding with --encoding"):
        predict_csv(clf, src, tmp_path / "out.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


# --- finetune: its input ------------------------------------------------------------------------------------------

def _finetune_args(en_sp_lm, train, out):
    return ["finetune", "--lm", str(en_sp_lm), "--train", str(train), "--config", "tiny", "--set", "lm_epochs=0",
            "--set", "lm_epochs_frozen=0", "--set", "clas_epochs=0,0,0,0", "--direction", "fwd", "--out", str(out)]


def test_finetune_train_that_is_a_directory(en_sp_lm, tmp_path):
    assert_one_line_error(runner.invoke(app, _finetune_args(en_sp_lm, tmp_path, tmp_path / "out")),
                          f"the train file {tmp_path} is a directory")


def test_finetune_train_in_another_encoding(en_sp_lm, tmp_path):
    rows = [["text", "label"]] + [[t + " café", y] for t, y in zip(*vars(made_up(60)).values())]
    train = _write_csv(tmp_path / "train.csv", rows, "latin-1")
    line = assert_one_line_error(runner.invoke(app, _finetune_args(en_sp_lm, train, tmp_path / "out")),
                                 f"{train} is not valid utf-8", "give its encoding with --encoding")
    assert "encoding:" not in line and not (tmp_path / "out").exists()
    data = task_from_csv(train, lang="en", encoding="latin-1").load()
    assert all(t.endswith("café") for t in data.train.texts)
    result = runner.invoke(app, _finetune_args(en_sp_lm, train, tmp_path / "out") + ["--encoding", "cp1252"])
    assert result.exit_code == 0, result.output
    spec = tmp_path / "task.yaml"  # a task spec's user is told about the spec's key instead
    spec.write_text("lang: en\ntrain: train.csv\n")
    with pytest.raises(UlmfitError, match=f"give its encoding with `encoding:` in {spec}"):
        task_from_file(spec).load()


def test_finetune_reads_cells_beyond_the_csv_field_limit(tmp_path):
    texts, labels = made_up(40).texts, made_up(40).labels
    texts[3] = long_text(200_000)
    train = _write_csv(tmp_path / "train.tsv", [["text", "label"], *zip(texts, labels)])
    train.write_text(train.read_text().replace(",", "\t"))
    data = task_from_csv(train, lang="en").load()
    assert long_text(200_000) in data.train.texts + data.valid.texts + data.test.texts


def test_finetune_caps_long_texts(en_sp_lm, tmp_path, caplog):
    train = made_up(80)
    train.texts[0] = long_text(100_000)
    with caplog.at_level(logging.WARNING, logger="ulmfit"):
        out = finetune(en_sp_lm, ClassificationData("en", [], train), tmp_path / "clf",
                       load_finetune_config("tiny", NO_EPOCHS | {"max_tokens_per_text": 200}), directions="fwd")
    assert "are longer than 200 tokens: only their first 200 are read" in caplog.text
    config = json.loads((out / "config.json").read_text())
    assert config["head"]["max_tokens_per_text"] == 200
    assert Classifier.from_pretrained(out).max_tokens == 200  # prediction reads what training read
    result = runner.invoke(app, _finetune_args(en_sp_lm, tmp_path / "x.csv", tmp_path / "o") +
                           ["--max-tokens-per-text", "1"])
    assert_one_line_error(result, "max_tokens_per_text must be a whole number of at least 2")


def test_finetune_lm_that_is_a_corpus_or_a_classifier(en_sp_lm, classifier_dir, tmp_path):
    train = _write_csv(tmp_path / "train.csv", [["text", "label"], *zip(made_up(40).texts, made_up(40).labels)])
    corpus = en_sp_lm.parent / "corpus"
    args = _finetune_args(en_sp_lm, train, tmp_path / "out")
    args[2] = str(corpus)
    assert_one_line_error(runner.invoke(app, args), f"{corpus} is a corpus written by `ulmfit prepare`",
                          f"ulmfit pretrain {corpus} --out")
    args[2] = str(classifier_dir)
    assert_one_line_error(runner.invoke(app, args), f"{classifier_dir} is a classifier")


def test_task_spec_that_is_not_utf8(tmp_path):
    spec = tmp_path / "task.yaml"
    spec.write_bytes("lang: fr\ntrain: caf\xe9.csv\n".encode("latin-1"))
    with pytest.raises(UlmfitError, match=r"task\.yaml is not valid utf-8 \(byte 0xe9 at offset 19\): save the task "
                                          r"spec as UTF-8\.$"):
        task_from_file(spec)


def test_a_huge_word_level_text_is_read(en_word_lm):
    # spaCy refuses texts over a million characters unless told that only its tokenizer runs
    from ulmfit.pretrain.modeldir import ModelDir

    text = long_text(1_200_000)
    ids = ModelDir.open(en_word_lm).tokenizer.encode(text)
    assert len(ids) > 300_000
