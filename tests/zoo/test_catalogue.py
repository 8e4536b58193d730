"""The catalogue of named models, and `from_pretrained` on local model directories."""
from __future__ import annotations

import pytest
import torch
import yaml
from typer.testing import CliRunner

import ulmfit
from ulmfit.cli import app
from ulmfit.errors import UlmfitError
from ulmfit.zoo.catalogue import add_entry, builtin_entries, get_entry, list_models, load_catalogue, validate_entry
from ulmfit.zoo.pretrained import from_pretrained, resolve_model

SHA = "a" * 64
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_entry(name: str = "vi-wiki-sp15k", **changes) -> dict:
    return {"name": name, "lang": "vi", "repo_id": "ulmfit/vi-wiki-sp15k", "revision": COMMIT,
            "tokenizer": {"type": "sentencepiece", "vocab_size": 15000}, "directions": ["fwd", "bwd"],
            "corpus": {"source": "viwiki-20231101", "tokens": 100_000_000},
            "metrics": {"fwd": {"valid_ppl": 31.5}, "bwd": {"valid_ppl": 33.0}}, "license": "cc-by-sa-4.0",
            "sha256": {"fwd/model.safetensors": SHA, "bwd/model.safetensors": "b" * 64}} | changes


@pytest.fixture(autouse=True)
def user_catalogue(tmp_path, monkeypatch):
    path = tmp_path / "user-catalogue.yaml"
    monkeypatch.setenv("ULMFIT_CATALOGUE", str(path))
    return path


@pytest.mark.parametrize("raw", builtin_entries(), ids=lambda raw: raw.get("name", "?"))
def test_every_builtin_entry_is_valid(raw):
    entry = validate_entry(raw)
    assert entry.third_party or entry.revision, "a Hub entry pins a revision"


def test_builtin_names_are_unique():
    names = [raw["name"] for raw in builtin_entries()]
    assert len(names) == len(set(names))


def test_add_list_and_get(user_catalogue):
    add_entry(hub_entry())
    add_entry(hub_entry("th-wiki-sp15k", lang="th", repo_id="ulmfit/th-wiki-sp15k"))
    assert {"vi-wiki-sp15k", "th-wiki-sp15k"} <= set(list_models())
    assert list_models("vi-wiki-*") == ["vi-wiki-sp15k"]
    assert [n for n in list_models(lang="th") if "-wiki-" in n] == ["th-wiki-sp15k"]  # besides the built-in ones
    entry = get_entry("vi-wiki-sp15k")
    assert entry.repo_id == "ulmfit/vi-wiki-sp15k" and entry.directions == ("fwd", "bwd")
    # adding a namesake replaces it
    add_entry(hub_entry(metrics={"fwd": {"valid_ppl": 29.0}}))
    assert load_catalogue()["vi-wiki-sp15k"].metrics["fwd"]["valid_ppl"] == 29.0
    assert [m["name"] for m in yaml.safe_load(user_catalogue.read_text())["models"]].count("vi-wiki-sp15k") == 1


def test_unknown_name_suggests_close_ones():
    add_entry(hub_entry())
    with pytest.raises(UlmfitError, match="Did you mean vi-wiki-sp15k"):
        get_entry("vi-wiki-sp16k")
    with pytest.raises(UlmfitError, match="ulmfit list"):
        get_entry("zzzzzzzz")


@pytest.mark.parametrize("change, message", [
    ({"revision": "main"}, "revision must pin a commit"),
    ({"repo_id": "no-slash"}, "repo_id must be"),
    ({"sha256": {"fwd/model.safetensors": SHA}}, "no entry for bwd/model.safetensors"),
    ({"sha256": {"fwd/model.safetensors": "xyz", "bwd/model.safetensors": SHA}}, "64 hexadecimal"),
    ({"tokenizer": {"type": "bpe", "vocab_size": 5}}, "tokenizer must be"),
    ({"directions": ["up"]}, "directions must be"),
    ({"lang": "qqq"}, "qqq"),
    ({"name": "Bad Name"}, "the name must be"),
    ({"colour": "blue"}, "unknown keys: colour"),
    ({"third_party": {"format": "fastai-wt103", "urls": {"fwd": "ftp://x"}}}, "http"),
])
def test_invalid_entries_are_refused(change, message):
    with pytest.raises(UlmfitError, match=message):
        validate_entry(hub_entry(**change))


def test_third_party_entry_may_lack_a_publisher_checksum():
    entry = validate_entry(hub_entry(repo_id=None, revision=None, sha256={"fwd": None},
                                     third_party={"format": "fastai-wt103", "urls": {"fwd": "https://example.org/a.tgz"}}))
    assert entry.third_party["format"] == "fastai-wt103"


def test_broken_user_catalogue_is_reported(user_catalogue):
    user_catalogue.write_text("models: {not: a list}\n")
    with pytest.raises(UlmfitError, match="must hold a `models:` list"):
        load_catalogue()


def test_from_pretrained_local_directory(sp_model_dir):
    fwd, bwd = from_pretrained(sp_model_dir, direction="both")
    assert fwd.direction == "fwd" and bwd.direction == "bwd" and fwd.tokenizer is bwd.tokenizer
    assert fwd.config["lang"] == "en" and not fwd.model.training
    ids = fwd.encode("The river flows")
    assert fwd.decode(ids) == "The river flows"
    with torch.no_grad():
        fwd.model.reset()
        logits = fwd.model(torch.tensor([ids]))[0]
    assert logits.shape == (1, len(ids), fwd.config["vocab_size"])
    text = fwd.generate("The river", words=8, seed=0)
    assert text.startswith("The river") and len(text.split()) > 2
    with pytest.raises(UlmfitError, match="forward model"):
        bwd.generate("The river")
    assert ulmfit.from_pretrained(str(sp_model_dir)).path == sp_model_dir


def test_bad_specs(tmp_path):
    with pytest.raises(UlmfitError, match="no model directory at"):
        resolve_model(tmp_path / "missing")
    with pytest.raises(UlmfitError, match="no model named"):
        resolve_model("no-such-model")
    with pytest.raises(UlmfitError, match="not a ulmfit model directory"):
        from_pretrained(tmp_path)
    with pytest.raises(UlmfitError, match="direction must be"):
        from_pretrained(tmp_path, direction="up")


def test_cli_list_info_and_generate(sp_model_dir):
    add_entry(hub_entry())
    runner = CliRunner()
    listed = runner.invoke(app, ["list", "vi-*"])
    assert listed.exit_code == 0 and "vi-wiki-sp15k" in listed.output and "31.5/33.0" in listed.output
    assert "no model matches" in runner.invoke(app, ["list", "--lang", "fr"]).output
    info = runner.invoke(app, ["info", "vi-wiki-sp15k"])
    assert info.exit_code == 0 and yaml.safe_load(info.output)["revision"] == COMMIT
    missing = runner.invoke(app, ["info", "vi-wiki-sp16k"])
    assert missing.exit_code == 1 and "Did you mean vi-wiki-sp15k" in missing.output
    local = runner.invoke(app, ["info", str(sp_model_dir)])
    assert local.exit_code == 0 and yaml.safe_load(local.output)["tokenizer"]["type"] == "sentencepiece"
    generated = runner.invoke(app, ["generate", str(sp_model_dir), "The river", "--words", "5", "--seed", "1"])
    assert generated.exit_code == 0 and generated.output.startswith("The river")
