"""`ulmfit catalogue mirror`: a third-party model from its publisher's server (the local file server) onto the Hub
(the local Hub), pinned in the user catalogue, end to end."""
from __future__ import annotations

import json

import pytest
import torch
import yaml
from huggingface_hub import ModelCard, constants
from typer.testing import CliRunner

from tests.file_server import serve
from tests.zoo.test_convert import V1_SPECIALS, EN_WORDS, logits, wt103_archive
from ulmfit.cli import app
from ulmfit.errors import UlmfitError
from ulmfit.files import file_digest
from ulmfit.zoo.catalogue import get_entry
from ulmfit.zoo.pin import mirror_entry
from ulmfit.zoo.pretrained import from_pretrained


@pytest.fixture
def publisher(tmp_path):
    yield from serve(tmp_path / "www")


def test_mirror_publishes_converts_and_pins(hub, publisher, tmp_path):
    itos = V1_SPECIALS + EN_WORDS
    models = {}
    for seed, direction in enumerate(("fwd", "bwd"), 1):
        archive, models[direction] = wt103_archive(tmp_path, direction, itos, seed=seed)
        publisher.put(f"models/{archive.name}", archive.read_bytes())
    entry = {"name": "en-old-wt103", "lang": "en", "description": "An old WikiText-103 model.",
             "tokenizer": {"type": "word", "vocab_size": len(itos)}, "directions": ["fwd", "bwd"],
             "corpus": {"source": "wikitext-103"}, "metrics": {"fwd": {"valid_ppl": 29.4}}, "license": "mit",
             "sha256": {"wt103-fwd.tgz": None, "wt103-bwd.tgz": None},
             "third_party": {"format": "fastai-wt103",
                             "urls": {f: f"{publisher.url}/models/{f}" for f in ("wt103-fwd.tgz", "wt103-bwd.tgz")}}}
    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text(yaml.safe_dump({"models": [entry]}))
    hub.monkeypatch.setenv("ULMFIT_CACHE", str(tmp_path / "ulmfit-cache"))

    result = CliRunner().invoke(app, ["catalogue", "mirror", "en-old-wt103", "--to", "tester"])
    assert result.exit_code == 0, result.output
    assert "pinned en-old-wt103" in result.output and len(publisher.requests) == 2
    pinned = get_entry("en-old-wt103")
    commit = hub.state.resolve(hub.state.load("tester/en-old-wt103"), "main")
    assert pinned.third_party is None and pinned.repo_id == "tester/en-old-wt103" and pinned.revision == commit
    files = hub.files("tester/en-old-wt103")
    converted = tmp_path / "ulmfit-cache" / "third_party" / "en-old-wt103"
    for f in ("fwd/model.safetensors", "bwd/model.safetensors"):
        assert pinned.sha256[f] == file_digest(converted / f) and files[f] == (converted / f).read_bytes()
    assert pinned.metrics == {"fwd": {"valid_ppl": 29.4}} and pinned.license == "mit"

    card = ModelCard.load("tester/en-old-wt103")  # the card as the Hub shows it
    assert card.data.license == "mit" and card.data.pipeline_tag == "text-generation"
    assert [(r.metric_type, r.metric_value) for r in card.data.eval_results] == [("perplexity", 29.4)]
    assert f"{publisher.url}/models/wt103-fwd.tgz" in card.text and "fastai's WikiText-103" in card.text

    # A fresh HF_HOME and no publisher: the name now comes from the mirror, checked against the pinned sha256.
    hub.monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "fresh" / "hub"))
    hub.monkeypatch.setenv("ULMFIT_CACHE", str(tmp_path / "fresh" / "ulmfit"))
    publisher.requests.clear()
    lm = from_pretrained("en-old-wt103")
    assert lm.path.name == commit and publisher.requests == []
    by_repo = from_pretrained("tester/en-old-wt103", direction="bwd")
    new_itos = json.loads((lm.path / "vocab.json").read_text())
    ids = [new_itos.index(t) for t in ["xxbos", "the", "cat", "sat"]]
    perm = [new_itos.index(t) for t in itos]
    for ours, source in ((lm, models["fwd"]), (by_repo, models["bwd"])):
        assert torch.allclose(logits(ours.model, ids)[:, perm], logits(source, [itos.index(new_itos[i]) for i in ids]),
                              atol=1e-6)


def test_mirror_refuses_what_is_not_third_party(hub, run_dir):
    with pytest.raises(UlmfitError, match="no model named 'nope'"):
        mirror_entry("nope", "tester")
    with pytest.raises(UlmfitError, match="the Hub user or organisation"):
        mirror_entry("en-wt103", "tester/x")
