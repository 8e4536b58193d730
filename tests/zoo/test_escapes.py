"""Nothing from a download escapes the cache, and an unreachable Hub is reported at once (issue 13).

Each test makes the fault happen: a hostile catalogue file, a hostile repository or server on the local Hub, an
endpoint that stops answering.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import pytest
import yaml
from huggingface_hub import HfApi

from tests.conftest import FWD, REPO
from ulmfit.errors import UlmfitError
from ulmfit.zoo.catalogue import add_entry, load_catalogue
from ulmfit.zoo.hub import download_model, push_model
from ulmfit.zoo.pin import catalogue_entry
from ulmfit.zoo.pretrained import from_pretrained


def _write_catalogue(path: Path, *entries: dict) -> None:
    path.write_text(yaml.safe_dump({"models": list(entries)}))


@pytest.mark.parametrize("where", ["relative", "absolute"])
def test_catalogue_keys_that_leave_the_cache_are_refused_and_nothing_is_deleted(hub, run_dir, tmp_path, where):
    """Before: a sha256 key `../…` or `/…` made `ulmfit download` delete that file when its hash did not match."""
    entry = catalogue_entry(run_dir, REPO, push_model(run_dir, REPO)["commit"])
    victim = tmp_path / "precious.txt"
    victim.write_text("not the cache's")
    snapshot = hub.home / "hub" / "models--tester--en-tiny" / "snapshots" / entry["revision"]
    key = os.path.relpath(victim, snapshot) if where == "relative" else str(victim)
    assert key.startswith("..") == (where == "relative")
    entry["sha256"][key] = "0" * 64
    _write_catalogue(Path(hub.env["ULMFIT_CATALOGUE"]), entry)
    with pytest.raises(UlmfitError, match=rf"catalogue entry '{entry['name']}': sha256 key '.*precious.txt' is not "
                                          "a relative path inside the model's folder"):
        from_pretrained(entry["name"])
    assert victim.read_text() == "not the cache's"
    with pytest.raises(UlmfitError, match="is not a relative path"):
        add_entry(entry)  # `ulmfit catalogue add` writes no such entry either


def test_third_party_file_names_are_checked_when_the_catalogue_is_read(tmp_path, monkeypatch):
    catalogue = tmp_path / "catalogue.yaml"
    monkeypatch.setenv("ULMFIT_CATALOGUE", str(catalogue))
    entry = {"name": "en-evil", "lang": "en", "tokenizer": {"type": "word", "vocab_size": 10}, "directions": ["fwd"],
             "license": "mit", "sha256": {"../../evil.tgz": None},
             "third_party": {"format": "fastai-wt103", "urls": {"../../evil.tgz": "https://example.org/a.tgz"}}}
    _write_catalogue(catalogue, entry)
    with pytest.raises(UlmfitError, match="catalogue entry 'en-evil': sha256 key '../../evil.tgz'"):
        load_catalogue()
    entry["sha256"] = {}
    entry["sha256"] = {"evil.tgz": None}
    entry["third_party"]["urls"] = {"/tmp/evil.tgz": "https://example.org/a.tgz"}
    _write_catalogue(catalogue, entry)
    with pytest.raises(UlmfitError, match="catalogue entry 'en-evil': third_party.urls key '/tmp/evil.tgz' is not a "
                                          "plain file name"):
        load_catalogue()


def test_a_config_naming_a_tokenizer_outside_the_snapshot_is_not_read(hub, run_dir, tmp_path):
    secret = tmp_path / "secret" / "spm.model"
    secret.parent.mkdir()
    shutil.copyfile(run_dir / "spm.model", secret)
    config = json.loads((run_dir / "config.json").read_text())
    for name in (os.path.relpath(secret, tmp_path), str(secret)):
        config["tokenizer"]["file"] = name
        (run_dir / "config.json").write_text(json.dumps(config))
        HfApi().create_repo("tester/hostile", exist_ok=True)
        HfApi().upload_folder(repo_id="tester/hostile", folder_path=run_dir, allow_patterns=["config.json", FWD])
        with pytest.raises(UlmfitError, match=r"^hf-hub:tester/hostile: config.json has tokenizer.file = .* but it "
                                              "must be 'spm.model'"):
            from_pretrained("tester/hostile")


def test_a_server_that_names_a_blob_outside_the_cache_is_not_read(hub, run_dir, tmp_path):
    """huggingface_hub stores a file under the ETag the server sends: `../` in it leaves the cache."""
    push_model(run_dir, REPO)
    outside = tmp_path / "outside-config.json"
    hub.state.etags["config.json"] = os.path.relpath(outside, hub.home / "hub" / "models--tester--en-tiny" / "blobs")
    with pytest.raises(UlmfitError, match="the cached config.json of tester/en-tiny points outside the Hugging Face "
                                          "cache"):
        download_model(REPO)


def test_an_unreachable_hub_is_reported_once_and_at_once(hub, run_dir, caplog):
    """Before: a pinned commit missing from the cache made huggingface_hub retry every file for ~25 s and log each
    retry (`Retrying in 8s [Retry 5/5]`) before the error."""
    entry = catalogue_entry(run_dir, REPO, push_model(run_dir, REPO)["commit"])
    path = download_model(REPO, revision=entry["revision"], sha256=entry["sha256"])
    (path / FWD).unlink()  # an incomplete cache: the next download needs the network
    hub.server.stop()
    start = time.monotonic()
    with caplog.at_level(logging.INFO), pytest.raises(UlmfitError, match="cannot reach the Hub") as failed:
        download_model(REPO, revision=entry["revision"], sha256=entry["sha256"])
    assert time.monotonic() - start < 3
    assert str(hub.home / "hub") in str(failed.value) and "HF_HUB_OFFLINE=1" in str(failed.value)
    assert not [r for r in caplog.records if "Retry" in r.getMessage()]


def test_a_pinned_commit_in_the_cache_needs_no_network(hub, run_dir):
    entry = catalogue_entry(run_dir, REPO, push_model(run_dir, REPO)["commit"])
    path = download_model(REPO, revision=entry["revision"], sha256=entry["sha256"])
    hub.server.stop()
    assert download_model(REPO, revision=entry["revision"], sha256=entry["sha256"]) == path
