"""Tasks from Hugging Face datasets (`--hf-dataset`), offline: a dataset that `datasets` saved to disk, and one kept
as parquet files; tasks named by `--name` or sensibly after their files; the config chosen by the device."""
from __future__ import annotations

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from ulmfit.benchmarks.finetune import config_for_device
from ulmfit.benchmarks.tasks import default_task_name, task_from_csv, task_from_hf, user_task
from ulmfit.errors import UlmfitError

TEXTS = ["a fine film", "a dull film", "great acting", "poor acting", "I loved it", "I hated it"] * 10


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    """Keep `datasets`' own cache (what load_dataset builds from parquet) in the test's folder."""
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets-cache")


def dataset_dict(n_test: int = 12) -> DatasetDict:
    features = Features({"review": Value("string"), "stars": ClassLabel(names=["neg", "pos"])})
    labels = [i % 2 == 0 for i in range(len(TEXTS))]
    rows = {"review": TEXTS, "stars": [int(not pos) for pos in labels]}
    full = Dataset.from_dict(rows, features=features)
    return DatasetDict({"train": full.select(range(n_test, len(TEXTS))), "test": full.select(range(n_test))})


def test_a_dataset_saved_to_disk(tmp_path):
    dataset_dict().save_to_disk(tmp_path / "reviews")
    task = task_from_hf(str(tmp_path / "reviews"), lang="en", text_col="review", label_col="stars")
    assert task.id == "en/reviews" and task.name == "reviews" and task.hf_dataset is None
    data = task.load()
    assert data.labels == ["neg", "pos"] and len(data.test) == 12
    assert len(data.train) + len(data.valid) == len(TEXTS) - 12  # no valid split: carved from train
    assert data.train.texts[0] in TEXTS and set(data.train.labels) == {"neg", "pos"}


def test_parquet_files_with_their_splits_named(tmp_path):
    folder = tmp_path / "parquet-set"
    folder.mkdir()
    data = dataset_dict()
    data["train"].to_parquet(str(folder / "train.parquet"))
    data["test"].to_parquet(str(folder / "holdout.parquet"))
    task = user_task(lang="en", hf_dataset=str(folder), text_col="review", label_col="stars",
                     test_split="holdout", name="Film reviews")
    assert task.id == "en/film-reviews" and task.name == "Film reviews"
    loaded = task.load()
    assert len(loaded.test) == 12 and loaded.labels == ["neg", "pos"]  # datasets keeps the ClassLabel in parquet
    with pytest.raises(UlmfitError, match=r"has no split 'test' \(it has: holdout, train\); name one with --test-split"):
        task_from_hf(str(folder), lang="en", text_col="review", label_col="stars", test_split="test").load()
    with pytest.raises(UlmfitError, match=r"has no column 'text' \(it has: review, stars\).*--text-col"):
        task_from_hf(str(folder), lang="en", label_col="stars", test_split="holdout").load()


def test_a_hub_dataset_that_cannot_be_reached_is_one_sentence(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    task = task_from_hf("some-org/some-reviews:en", lang="en")
    assert task.hf_dataset == "some-org/some-reviews" and task.hf_config == "en" and task.id == "en/some-reviews"
    with pytest.raises(UlmfitError, match="could not load the dataset some-org/some-reviews:en .*HF_HUB_OFFLINE"):
        task.load()


def test_user_task_takes_files_or_a_dataset(tmp_path):
    (tmp_path / "t.csv").write_text("text,label\nx,a\ny,b\n")
    with pytest.raises(UlmfitError, match="one of them"):
        user_task(lang="en")
    with pytest.raises(UlmfitError, match="one of them"):
        user_task(lang="en", train=tmp_path / "t.csv", hf_dataset="x/y")
    with pytest.raises(UlmfitError, match="go with --hf-dataset"):
        user_task(lang="en", train=tmp_path / "t.csv", test_split="test")
    with pytest.raises(UlmfitError, match="go with --train"):
        user_task(lang="en", hf_dataset="x/y", test=tmp_path / "t.csv")


def test_a_csv_task_is_named_after_its_data_not_its_split(tmp_path):
    folder = tmp_path / "vi-reviews"
    folder.mkdir()
    for name in ("train.csv", "reviews-train.csv", "data.jsonl"):
        (folder / name).write_text("text,label\nx,a\ny,b\n" if name.endswith(".csv") else '{"text":"x","label":"a"}\n')
    assert default_task_name(folder / "train.csv") == "vi-reviews"
    assert default_task_name(folder / "reviews-train.csv") == "reviews"
    assert default_task_name(folder / "data.jsonl") == "vi-reviews"
    task = task_from_csv(folder / "train.csv", lang="vi")
    assert (task.id, task.name) == ("vi/vi-reviews", "vi-reviews")
    named = task_from_csv(folder / "train.csv", lang="vi", name="Phim reviews 2024")
    assert (named.id, named.name) == ("vi/phim-reviews-2024", "Phim reviews 2024")


def test_the_config_fits_the_device():
    assert config_for_device("paper", "cpu") == ("paper", None)
    name, why = config_for_device(None, "cpu")
    assert name == "tiny" and "--config paper" in why
