"""The benchmark task registry: every task read from the shared files, users' own tasks, data checks, label limits."""
from __future__ import annotations

import gzip
import io
import json
import logging
import tarfile
from collections import Counter

import pytest

from ulmfit.benchmarks import loaders
from ulmfit.benchmarks.data import ClassificationData, LabelledTexts, check_data
from ulmfit.benchmarks.tasks import (
    REGISTRY,
    Baseline,
    get_task,
    limit_labels,
    list_tasks,
    slug,
    task_from_csv,
    task_from_file,
)
from ulmfit.errors import UlmfitError

BINARY = ["neg", "pos"]
# id: (train, valid, test, labels or their number, rows dropped by reason) as each task's description documents them
DOCUMENTED = {
    "en/imdb-sample": (450, 50, 500, BINARY, {}),
    "en/trec6": (4907, 545, 500, ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"], {}),
    "en/trec50": (4907, 545, 500, 50, {}),
    "en/mr": (8530, 1066, 1066, BINARY, {}),
    "en/cr": (3017, 377, 377, BINARY, {"empty_text": 4}),
    "en/subj": (8000, 1000, 1000, ["objective", "subjective"], {}),
    "en/mpqa": (8483, 1060, 1060, BINARY, {"empty_text": 3}),
    "th/wisesight": (21628, 2404, 2671, ["pos", "neu", "neg", "q"], {}),
    "th/wisesight-kaggle": (21628, 2404, 2674, ["pos", "neu", "neg", "q"], {}),
    "zh/waimai": (9591, 1198, 1198, BINARY, {}),
    "zh/chnsenticorp": (6213, 776, 776, BINARY, {"empty_text": 1}),
    "zh/online-shopping": (50219, 6277, 6277, BINARY, {"empty_text": 1}),
    "zh/tnews": (48024, 5336, 10000, 15, {}),
    "de/germeval2021": (2920, 324, 944, ["not_toxic", "toxic"], {}),
    "de/germeval2021-multi": (2920, 324, 944, ["toxic", "engaging", "fact_claiming"], {}),
}


def test_every_registered_task_has_documented_counts():
    assert set(REGISTRY) == set(DOCUMENTED) | {"en/imdb"}
    for task in list_tasks():
        assert task.metric in ("accuracy", "macro_f1", "micro_f1")
        assert task.files and task.source_url and task.description
        for baseline in (task.published_ulmfit, task.published_best):
            assert baseline is None or (0 < baseline.value <= 1 and baseline.source)


@pytest.mark.parametrize("task_id", sorted(DOCUMENTED))
def test_registered_task_loads_with_documented_counts(task_id, shared_data):
    n_train, n_valid, n_test, labels, dropped = DOCUMENTED[task_id]
    task = get_task(task_id)
    data = task.load(shared_data)
    assert (len(data.train), len(data.valid), len(data.test)) == (n_train, n_valid, n_test)
    if isinstance(labels, list):
        assert data.labels == labels
    else:
        assert len(data.labels) == labels
    assert data.dropped == dropped
    assert data.lang == task.lang and data.multi_label == task.multi_label
    for split in (data.train, data.valid, data.test):
        assert all(text.strip() for text in split.texts)
        used = {lab for labs in split.labels for lab in labs} if data.multi_label else set(split.labels)
        assert used <= set(data.labels)
    in_training = {lab for labs in data.train.labels for lab in labs} if data.multi_label else set(data.train.labels)
    assert in_training == set(data.labels)
    # carved splits come out the same on a second load
    assert task.load(shared_data).valid == data.valid


def test_trec_train_file_is_read_as_latin1(shared_data):
    data = get_task("en/trec6").load(shared_data)
    texts = data.train.texts + data.valid.texts
    assert any("sister\u00f0city" in t for t in texts)  # byte 0xf0 of the original file
    with pytest.raises(UlmfitError, match=r"train_5500\.label\.gz is not valid utf-8 .*download it again"):
        loaders.read_text(shared_data / "en/trec/train_5500.label.gz", "utf-8")


def test_wisesight_kaggle_test_is_the_hub_test_plus_three_error_rows(shared_data):
    hub = get_task("th/wisesight").load(shared_data).test
    kaggle = get_task("th/wisesight-kaggle").load(shared_data).test
    extra = Counter(zip(kaggle.texts, kaggle.labels)) - Counter(zip(hub.texts, hub.labels))
    assert extra == Counter({("#ERROR!", "neu"): 3})


def test_tnews_labels_follow_the_label_file_and_dev_is_the_test_split(shared_data):
    data = get_task("zh/tnews").load(shared_data)
    assert data.labels[0] == "news_story" and data.labels[-1] == "news_game"
    assert Counter(data.test.labels)["news_tech"] == 1089  # dev.tsv's count of its commonest class


def test_germeval_multi_label_agrees_with_the_toxic_task(shared_data):
    single = get_task("de/germeval2021").load(shared_data)
    multi = get_task("de/germeval2021-multi").load(shared_data)
    assert multi.multi_label and multi.test.texts == single.test.texts
    assert [("toxic" in labs) for labs in multi.test.labels] == [lab == "toxic" for lab in single.test.labels]
    assert any(labs == [] for labs in multi.train.labels)  # comments with none of the three labels are kept


def test_imdb_sample_is_fast_and_balanced(shared_data):
    data = get_task("en/imdb-sample").load(shared_data)
    assert Counter(data.test.labels) == {"neg": 250, "pos": 250}
    assert Counter(data.train.labels + data.valid.labels) == {"neg": 250, "pos": 250}


@pytest.mark.slow
def test_imdb_full_archive(shared_data):
    data = get_task("en/imdb").load(shared_data)
    assert (len(data.train), len(data.valid), len(data.test)) == (22500, 2500, 25000)
    assert Counter(data.test.labels) == {"neg": 12500, "pos": 12500}
    sample = get_task("en/imdb-sample").load(shared_data)
    assert set(sample.test.texts) <= set(data.test.texts)
    assert set(sample.train.texts) <= set(data.train.texts + data.valid.texts)


def _tar_member(tar: tarfile.TarFile, name: str, text: str) -> None:
    raw = text.encode("utf-8")
    info = tarfile.TarInfo(name)
    info.size = len(raw)
    tar.addfile(info, io.BytesIO(raw))


def test_imdb_reader_streams_the_original_archive_layout(tmp_path):
    archive = tmp_path / "en/imdb/aclImdb_v1_labeled_only.tar.xz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:  # the original is .tar.gz: the reader goes by content
        for split in ("train", "test"):
            for label in ("pos", "neg"):
                for i in (10, 2, 1):
                    _tar_member(tar, f"aclImdb/{split}/{label}/{i}_7.txt", f"{split} {label} {i}")
        _tar_member(tar, "aclImdb/train/unsup/0_0.txt", "no label")
        _tar_member(tar, "aclImdb/imdb.vocab", "the")
    data = get_task("en/imdb").load(tmp_path)
    assert data.test.texts == [f"test {lab} {i}" for lab in ("neg", "pos") for i in (1, 2, 10)]
    assert data.test.labels == ["neg"] * 3 + ["pos"] * 3
    assert len(data.train) + len(data.valid) == 6 and data.unlabelled == ["no label"]


# ---------------------------------------------------------------------------------------------- the Hub path

def test_missing_files_without_a_hub_twin_name_the_source_and_path(tmp_path):
    with pytest.raises(UlmfitError, match=r"zh/waimai needs .*waimai_10k\.csv\.xz, which does not exist: download it "
                                          r"from https://github\.com/SophonPlus"):
        get_task("zh/waimai").load(tmp_path)


def test_data_dir_comes_from_ulmfit_data(shared_data, monkeypatch):
    monkeypatch.setenv("ULMFIT_DATA", str(shared_data))
    assert len(get_task("en/trec6").load().test) == 500


def test_missing_files_load_the_hub_twin_with_its_columns_mapped(tmp_path, monkeypatch):
    import datasets

    codes = ["100", "101", "102", "103", "104", "106", "107", "108", "109", "110", "112", "113", "114", "115", "116"]
    features = datasets.Features({"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=codes)})
    hub = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"sentence": [f"title {i}" for i in range(150)],
                                             "label": [i % 15 for i in range(150)]}, features=features),
        "validation": datasets.Dataset.from_dict({"sentence": ["a", "b"], "label": [0, 14]}, features=features),
        "test": datasets.Dataset.from_dict({"sentence": ["c"], "label": [-1]}, features=features),
    })
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *args: calls.append(args) or hub)
    data = get_task("zh/tnews").load(tmp_path)
    assert calls == [("clue/clue", "tnews")]
    assert data.labels[0] == "news_story" and len(data.labels) == 15
    assert data.test.texts == ["a", "b"] and data.test.labels == ["news_story", "news_game"]
    assert (len(data.train), len(data.valid)) == (135, 15)


def test_hub_failure_is_one_sentence(tmp_path, monkeypatch):
    import datasets

    def offline(*args):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UlmfitError, match=r"could not load stanfordnlp/imdb .*no network.*put the files"):
        get_task("en/imdb").load(tmp_path)


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(UlmfitError) as e:
        get_task("en/trec")
    hint = str(e.value).split("did you mean ")[1].split("?")[0]
    assert set(hint.split(" or ")) == {"en/trec6", "en/trec50"}
    assert all(task_id in str(e.value) for task_id in REGISTRY)


def test_list_tasks_by_language():
    assert [t.id for t in list_tasks("zh")] == ["zh/chnsenticorp", "zh/online-shopping", "zh/tnews", "zh/waimai"]
    assert len(list_tasks()) == len(REGISTRY)


# ---------------------------------------------------------------------------------------------- users' own tasks

def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def test_task_from_file_csv_with_baselines(tmp_path):
    (tmp_path / "data").mkdir()
    _write(tmp_path / "data/train.csv", "text,label\n" + "".join(f"good {i},pos\nbad {i},neg\n" for i in range(10)))
    _write(tmp_path / "data/dev.csv", "text,label\ngood,pos\nbad,neg\n")
    _write(tmp_path / "data/test.csv", "text,label\nfine,pos\nawful,neg\n   ,pos\n")
    spec = _write(tmp_path / "spec.yaml", "id: my/reviews\nlang: en\ntrain: data/train.csv\nvalid: data/dev.csv\n"
                                          "test: data/test.csv\nmetric: macro_f1\npublished_best:\n  name: BERT\n"
                                          "  value: 0.91\n  source: Someone 2020\n")
    task = task_from_file(spec)
    assert (task.id, task.lang, task.metric) == ("my/reviews", "en", "macro_f1")
    assert task.published_best == Baseline("BERT", 0.91, "Someone 2020")
    data = task.load()
    assert (len(data.train), len(data.valid), len(data.test)) == (20, 2, 2)
    assert data.labels == BINARY and data.dropped == {"empty_text": 1}


def test_task_from_file_tsv_with_other_columns_and_carved_splits(tmp_path):
    rows = "".join(f"{i}\tsentence number {i}\t{'ab'[i % 2]}\n" for i in range(100))
    _write(tmp_path / "all.tsv", "id\tsentence\ttopic\n" + rows)
    spec = _write(tmp_path / "spec.yml", "lang: de\ntrain: all.tsv\ntext_col: sentence\nlabel_col: topic\n"
                                         "valid_frac: 0.2\nseed: 3\n")
    task = task_from_file(spec)
    assert task.id == f"de/{slug(tmp_path.name)}"  # all.tsv names no task: its folder does
    data = task.load()
    assert (len(data.train), len(data.valid), len(data.test)) == (70, 20, 10)
    assert data.labels == ["a", "b"]
    assert sorted(data.train.texts + data.valid.texts + data.test.texts) == sorted(
        f"sentence number {i}" for i in range(100))
    assert task_from_file(spec).load().test == data.test  # the same seed carves the same split


def test_latin1_file_needs_its_encoding(tmp_path):
    rows = "".join(f"café {i},a\nnaïve {i},b\n" for i in range(5))
    _write(tmp_path / "train.csv", "text,label\n" + rows, "latin-1")
    spec = _write(tmp_path / "spec.yaml", "lang: fr\ntrain: train.csv\n")
    with pytest.raises(UlmfitError, match=r"train\.csv is not valid utf-8 \(byte 0xe9 at offset \d+\): give its "
                                          r"encoding with `encoding:`"):
        task_from_file(spec).load()
    _write(spec, "lang: fr\ntrain: train.csv\nencoding: latin-1\n")
    data = task_from_file(spec).load()
    assert "café" in " ".join(data.train.texts + data.valid.texts + data.test.texts)


def test_task_from_csv_multi_label_jsonl_and_separator(tmp_path):
    lines = [{"text": f"t{i}", "tags": ["x", "y"][: i % 3]} for i in range(30)]
    train = tmp_path / "train.jsonl.gz"
    with gzip.open(train, "wt", encoding="utf-8") as f:
        f.write("\n".join(json.dumps(line) for line in lines) + "\n")
    test = _write(tmp_path / "test.csv", "text,tags\nu1,x|y\nu2,\nu3,y\n")
    task = task_from_csv(train, test, lang="en", label_col="tags", multi_label=True, metric="micro_f1")
    data = task.load()
    assert data.multi_label and data.labels == ["x", "y"]
    assert data.test.labels == [["x", "y"], [], ["y"]]
    assert (len(data.train), len(data.valid)) == (27, 3)


@pytest.mark.parametrize(("spec", "message"), [
    ("lang: en\ntrain: t.csv\nlabel_column: y\n", r"unknown key\(s\) label_column \(did you mean label_col\?\)"),
    ("train: t.csv\n", r"has no `lang`"),
    ("lang: en\ntrain: t.csv\nmetric: f1\n", r"'f1' is not a metric .*accuracy, macro_f1, micro_f1"),
    ("lang: en\ntrain: missing.csv\n", r"the train file .*missing\.csv does not exist"),
    ("lang: en\ntrain: t.csv\npublished_best: {name: X, value: 95.4, source: Y}\n", r"on the 0–1 scale"),
    ("lang: xx-bad code\ntrain: t.csv\n", r"is not a language code"),
    ("- just\n- a list\n", r"not a mapping"),
    ("lang: en\ntrain: t.csv\nseed: abc\n", r"a value of the wrong type"),
])
def test_bad_specs_get_one_sentence(tmp_path, spec, message):
    _write(tmp_path / "t.csv", "text,label\na,x\nb,y\n")
    with pytest.raises(UlmfitError, match=message):
        task_from_file(_write(tmp_path / "spec.yaml", spec))


def test_missing_column_names_the_columns(tmp_path):
    task = task_from_csv(_write(tmp_path / "t.csv", "review,stars\ngood,5\nbad,1\n"), lang="en")
    with pytest.raises(UlmfitError, match=r"t\.csv has no column 'text' \(its columns: review, stars\)"):
        task.load()


# ---------------------------------------------------------------------------------------------- data checks

def _data(train_texts, train_labels, test_texts=(), test_labels=(), **kwargs) -> ClassificationData:
    return ClassificationData(lang="en", labels=[], train=LabelledTexts(list(train_texts), list(train_labels)),
                              test=LabelledTexts(list(test_texts), list(test_labels)), **kwargs)


def test_single_class_label_column_is_an_error(tmp_path):
    task = task_from_csv(_write(tmp_path / "t.csv", "text,label\n" + "x,same\n" * 20), lang="en")
    with pytest.raises(UlmfitError, match=r"every training example has the same label \(same\)"):
        task.load()


def test_empty_texts_and_missing_labels_are_dropped_with_a_count(caplog):
    data = _data(["a", " \t", "", "b", "c"], ["x", "y", "x", None, "y"], ["d", "\n"], ["x", "y"])
    with caplog.at_level(logging.WARNING, logger="ulmfit"):
        checked = check_data(data)
    assert checked.train == LabelledTexts(["a", "c"], ["x", "y"]) and checked.test.texts == ["d"]
    assert checked.dropped == {"empty_text": 3, "missing_label": 1}
    assert "train split: dropped 2 row(s) with empty text" in caplog.text
    assert "test split: dropped 1 row(s) with empty text" in caplog.text
    assert check_data(checked) == checked  # a second check changes nothing


def test_unseen_test_labels_are_named():
    with pytest.raises(UlmfitError, match=r"the test split has labels that never occur in training \(q, z\)"):
        check_data(_data(["a", "b"], ["x", "y"], ["c", "d", "e"], ["x", "z", "q"]))


def test_multi_label_with_a_single_label_set_is_an_error():
    with pytest.raises(UlmfitError, match="same label"):
        check_data(_data(["a", "b"], [["x"], ["x"]], multi_label=True))
    assert check_data(_data(["a", "b"], [["x"], []], multi_label=True)).labels == ["x"]


def test_carve_is_disjoint_complete_and_seeded():
    split = LabelledTexts([str(i) for i in range(101)], ["l"] * 101)
    test, valid, train = loaders.carve(split, [0.1, 0.2], seed=0)
    assert (len(test), len(valid), len(train)) == (10, 20, 71)
    assert sorted(test.texts + valid.texts + train.texts, key=int) == split.texts
    assert loaders.carve(split, [0.1, 0.2], seed=0)[0] == test
    assert loaders.carve(split, [0.1, 0.2], seed=1)[0] != test


# ---------------------------------------------------------------------------------------------- labels limit

def test_limit_labels_is_stratified_and_keeps_every_class(shared_data):
    data = get_task("zh/tnews").load(shared_data)
    limited = limit_labels(data, 100, seed=0)
    counts = Counter(limited.train.labels)
    full = Counter(data.train.labels)
    assert len(limited.train) == 100 and set(counts) == set(full)  # news_stock (213 of 48,024) keeps one
    for label, count in counts.items():
        assert abs(count - 100 * full[label] / len(data.train)) <= 1.5
    assert len(limited.unlabelled) == len(data.train) - 100
    assert limited.valid == data.valid and limited.test == data.test


def test_limit_labels_is_deterministic():
    data = check_data(_data([f"t{i}" for i in range(200)], ["abc"[i % 3] for i in range(200)]))
    first = limit_labels(data, 20, seed=0)
    assert limit_labels(data, 20, seed=0) == first
    assert limit_labels(data, 20, seed=1).train != first.train
    assert Counter(first.train.labels) == {"a": 7, "b": 7, "c": 6}  # 1 each, then 17 shared by largest remainder
    assert limit_labels(data, 500) is data


def test_limit_labels_below_the_class_count(caplog):
    data = check_data(_data([f"t{i}" for i in range(50)], [str(i % 5) for i in range(50)]))
    with caplog.at_level(logging.WARNING, logger="ulmfit"):
        limited = limit_labels(data, 3)
    assert len(set(limited.train.labels)) == 3 and "leaves 2 class(es) without a training example" in caplog.text
    with pytest.raises(UlmfitError, match="leaves nothing to train on"):
        limit_labels(data, 0)


def test_limit_labels_multi_label_covers_each_label():
    labels = [["common"]] * 40 + [["rare", "common"], ["other"]] + [[]] * 18
    data = check_data(_data([f"t{i}" for i in range(60)], labels, multi_label=True))
    limited = limit_labels(data, 5, seed=2)
    assert len(limited.train) == 5
    assert {lab for labs in limited.train.labels for lab in labs} == {"common", "rare", "other"}
