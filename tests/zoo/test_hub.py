"""Publishing to and downloading from the Hub, against the local Hub server (`tests/hub_server.py`) on 127.0.0.1
(the `hub` fixture is in conftest.py)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, ModelCard, constants
from typer.testing import CliRunner

from tests.conftest import FWD, REPO, TOKEN
from ulmfit.cli import app
from ulmfit.errors import UlmfitError
from ulmfit.files import file_digest, write_json
from ulmfit.zoo.catalogue import add_entry, get_entry
from ulmfit.pretrain.modeldir import PUBLISHED_FILES
from ulmfit.zoo.hub import download_model, model_card, push_model
from ulmfit.zoo.pin import catalogue_entry
from ulmfit.zoo.pretrained import from_pretrained

torch.set_num_threads(1)


def _pinned(hub, run_dir, **push) -> dict:
    """Push `run_dir` and pin it in the user catalogue; the catalogue entry."""
    result = push_model(run_dir, REPO, **push)
    entry = catalogue_entry(run_dir, REPO, result["commit"])
    add_entry(entry)
    return entry


def test_round_trip_through_the_cli(hub, run_dir):
    """push → catalogue add → list → download into an empty HF_HOME → from_pretrained → generate → offline.

    `push` and the offline `generate` run as separate processes that know the Hub only from the environment."""
    pushed = hub.cli("push", str(run_dir), "--repo-id", REPO)
    assert pushed.returncode == 0, pushed.stderr
    published = hub.files(REPO)
    assert set(published) == {".gitattributes", "config.json", "README.md", "spm.model", "metrics.json", FWD,
                              "bwd/model.safetensors"}
    assert published[FWD] == (run_dir / FWD).read_bytes()
    assert "library_name: ulmfit" in published["README.md"].decode()
    commit = hub.state.resolve(hub.state.load(REPO), "main")
    assert commit in pushed.stdout

    runner = CliRunner()
    added = runner.invoke(app, ["catalogue", "add", str(run_dir), "--repo-id", REPO, "--name", "en-tiny"])
    assert added.exit_code == 0, added.output
    listed = runner.invoke(app, ["list"])
    assert "en-tiny" in listed.output and f"hf-hub:{REPO}" in listed.output
    entry = get_entry("en-tiny")
    assert entry.revision == commit and entry.sha256[FWD] == file_digest(run_dir / FWD)

    assert not list(hub.home.glob("hub/models--*/snapshots/*")), "the cache starts empty"
    downloaded = runner.invoke(app, ["download", "en-tiny"])
    assert downloaded.exit_code == 0, downloaded.output
    path = Path(downloaded.stdout.strip())
    assert path.is_relative_to(hub.home) and path.name == commit
    assert sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()) == sorted(
        f for f in published if f != ".gitattributes")
    lm = from_pretrained("en-tiny")
    assert lm.path == path and lm.generate("The", words=5, seed=1).startswith("The")

    hub.server.stop()  # no network from here on: the cache must do
    offline = hub.cli("generate", "en-tiny", "The", "--words", "5", "--seed", "1", offline=True)
    assert offline.returncode == 0 and offline.stdout.startswith("The"), offline.stderr
    hub.offline()
    original = from_pretrained(run_dir)
    for (name, a), (_, b) in zip(from_pretrained("en-tiny").model.state_dict().items(),
                                 original.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_model_card_validates_and_holds_the_metadata(sp_model_dir, tmp_path):
    bench = tmp_path / "results.json"
    bench.write_text(json.dumps([
        {"task": "en/imdb", "metric": "accuracy", "fwd": 0.81, "bwd": 0.8, "ensemble": 0.83,
         "dataset": "stanfordnlp/imdb"},
        {"task": "en/trec", "metric": "accuracy", "fwd": None, "ensemble": 0.9},
        {"task": "broken"},  # no metric, no value: left out
    ]))
    card = model_card(sp_model_dir, "org/en-tiny", bench_results=bench)
    parsed = ModelCard(str(card))  # huggingface_hub's own metadata parsing, from the text
    assert parsed.data.to_dict() == card.data.to_dict()
    data = parsed.data
    config = json.loads((sp_model_dir / "config.json").read_text())
    assert data.language == ["en"] and data.license == "cc-by-sa-4.0" and data.library_name == "ulmfit"
    assert {"ulmfit", "awd-lstm", "fastai", "en"} <= set(data.tags)
    assert "wikimedia/wikipedia" in data.datasets and data.model_name == "en-tiny"
    ppl = {r.metric_name: r.metric_value for r in data.eval_results if r.metric_type == "perplexity"}
    assert ppl == {"Perplexity (forward)": round(config["metrics"]["fwd"]["valid_ppl"], 2),
                   "Perplexity (backward)": round(config["metrics"]["bwd"]["valid_ppl"], 2)}
    assert all(r.dataset_split == "validation" for r in data.eval_results if r.metric_type == "perplexity")
    downstream = {(r.dataset_type, r.metric_name): r.metric_value for r in data.eval_results
                  if r.task_type == "text-classification"}
    assert downstream == {("stanfordnlp/imdb", "accuracy (forward)"): 0.81,
                          ("stanfordnlp/imdb", "accuracy (backward)"): 0.8,
                          ("stanfordnlp/imdb", "accuracy (ensemble)"): 0.83, ("en/trec", "accuracy (ensemble)"): 0.9}
    text = parsed.text
    assert 'ulmfit.from_pretrained("org/en-tiny")' in text and "Howard" in text and "MultiFiT" in text
    assert data.pipeline_tag == "text-generation"
    assert "ulmfit export-fastai org/en-tiny fastai-lm" in text and 'pretrained_fnames=["en-tiny", "en-tiny"]' in text
    assert f"{config['corpus']['tokens']['train']:,}" in text  # corpus size in the body


def test_tampered_cache_file_is_downloaded_again_once(hub, run_dir, caplog):
    entry = _pinned(hub, run_dir)
    path = download_model(REPO, revision=entry["revision"], sha256=entry["sha256"])
    before = hub.gets(FWD)
    (path / FWD).write_bytes(b"\0" * (path / FWD).stat().st_size)  # through the snapshot link: the blob itself
    again = download_model(REPO, revision=entry["revision"], sha256=entry["sha256"])
    assert again == path and file_digest(path / FWD) == entry["sha256"][FWD]
    assert hub.gets(FWD) == before + 1
    assert "does not match its catalogue sha256" in caplog.text
    (path / FWD).write_bytes(b"\0" * (path / FWD).stat().st_size)
    hub.offline()
    with pytest.raises(UlmfitError, match="does not match the catalogue's sha256 and downloads are off"):
        download_model(REPO, revision=entry["revision"], sha256=entry["sha256"])


def test_wrong_bytes_twice_fail_clearly(hub, run_dir):
    entry = _pinned(hub, run_dir)
    hub.state.corrupt.add(FWD)
    with pytest.raises(UlmfitError, match="does not match the sha256 the catalogue pins, even when downloaded again"):
        download_model(REPO, revision=entry["revision"], sha256=entry["sha256"])
    assert hub.gets(FWD) == 2
    snapshot = Path(constants.HF_HUB_CACHE) / "models--tester--en-tiny" / "snapshots" / entry["revision"]
    assert not (snapshot / FWD).exists(), "a file that failed its check must not stay in the cache"


def test_download_that_breaks_off_fails_clearly_and_leaves_nothing_half_written(hub, run_dir):
    push_model(run_dir, REPO)
    hub.state.truncated.add(FWD)
    with pytest.raises(UlmfitError, match="failed part-way .*run the command again"):
        download_model(REPO)
    cache = Path(constants.HF_HUB_CACHE) / "models--tester--en-tiny"
    assert not list(cache.glob(f"snapshots/*/{FWD}")) and not list(cache.glob("blobs/*incomplete"))
    hub.state.truncated.clear()
    assert file_digest(download_model(REPO) / FWD) == file_digest(run_dir / FWD)


def test_unknown_repository_revision_private_and_gated(hub, run_dir):
    with pytest.raises(UlmfitError, match="there is no repository tester/missing on"):
        download_model("tester/missing")
    with pytest.raises(UlmfitError, match="is not a valid Hub repository id"):
        download_model("tester/bad name")
    push_model(run_dir, REPO)
    with pytest.raises(UlmfitError, match="has no revision 'nope'"):
        download_model(REPO, revision="nope")
    hub.state.set_flags(REPO, gated=True)
    with pytest.raises(UlmfitError, match="is gated: accept its conditions"):
        download_model(REPO)
    hub.state.set_flags(REPO, gated=False, private=True)
    hub.monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(UlmfitError, match="or it is private and no token is set"):
        download_model(REPO)
    hub.monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert (download_model(REPO) / FWD).is_file()


def test_no_network_and_nothing_cached(hub, run_dir):
    hub.server.stop()
    cache = constants.HF_HUB_CACHE
    with pytest.raises(UlmfitError, match="cannot reach the Hub") as unreachable:
        download_model(REPO)
    assert "HF_HUB_OFFLINE=1" in str(unreachable.value) and cache in str(unreachable.value)
    hub.offline()
    with pytest.raises(UlmfitError, match=r"downloads are off \(HF_HUB_OFFLINE=1") as offline:
        download_model(REPO)
    assert cache in str(offline.value)


def test_repository_without_config_is_not_a_model(hub, tmp_path):
    folder = tmp_path / "not-a-model"
    (folder / "fwd").mkdir(parents=True)
    (folder / FWD).write_bytes(b"weights")
    (folder / "README.md").write_text("# something else\n")
    api = HfApi()
    api.create_repo("tester/other")
    api.upload_folder(repo_id="tester/other", folder_path=folder)
    with pytest.raises(UlmfitError, match="tester/other is not a ulmfit model: the repository has no config.json"):
        download_model("tester/other")


def test_push_needs_a_token(hub, run_dir):
    hub.monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(UlmfitError, match="publishing needs a Hugging Face token"):
        push_model(run_dir, REPO)
    assert not [r for r in hub.state.requests if r[0] == "POST"]
    hub.state.tokens = {TOKEN}
    with pytest.raises(UlmfitError, match="did not accept the token"):
        push_model(run_dir, REPO, token="hf_wrong")


def test_push_refuses_what_is_not_a_finished_model(hub, run_dir, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(UlmfitError, match="is not a ulmfit model directory: it has no config.json"):
        push_model(folder, REPO)
    with pytest.raises(UlmfitError, match="is not a Hub repository id"):
        push_model(run_dir, "no-slash")
    (run_dir / "bwd" / "model.safetensors").unlink()
    with pytest.raises(UlmfitError, match="is not a finished model directory: it lacks bwd/model.safetensors"):
        push_model(run_dir, REPO)
    assert not [r for r in hub.state.requests if r[0] == "POST"]


def test_create_pr_and_revision(hub, run_dir, tmp_path):
    first = push_model(run_dir, REPO)
    assert first["pr_url"] is None and first["revision"] == "main"
    bench = tmp_path / "results.json"
    bench.write_text(json.dumps([{"task": "en/imdb", "metric": "accuracy", "ensemble": 0.8}]))
    runner = CliRunner()
    proposed = runner.invoke(app, ["push", str(run_dir), "--repo-id", REPO, "--create-pr",
                                   "--bench-results", str(bench)])
    assert proposed.exit_code == 0, proposed.output
    assert f"pull request: {hub.server.url}/{REPO}/discussions/1" in proposed.stdout
    api = HfApi()
    pr_commit = api.model_info(REPO, revision="refs/pr/1").sha
    assert pr_commit in proposed.stdout
    assert api.model_info(REPO).sha == first["commit"], "a pull request leaves main alone"
    in_pr = download_model(REPO, revision="refs/pr/1")
    assert "en/imdb" in (in_pr / "README.md").read_text() and in_pr.name == pr_commit

    branch = push_model(run_dir, REPO, revision="dev", commit_message="a branch")
    assert branch["revision"] == "dev" and api.model_info(REPO, revision="dev").sha == branch["commit"]
    assert download_model(REPO, revision="dev").name == branch["commit"]
    assert api.model_info(REPO).sha == first["commit"]
    refused = runner.invoke(app, ["push", str(run_dir), "--repo-id", REPO, "--revision", "dev", "--create-pr"])
    assert refused.exit_code == 1 and "leave out --revision with --create-pr" in refused.stderr


def test_catalogue_entry_pins_the_pushed_files(hub, run_dir):
    result = push_model(run_dir, REPO, revision="dev")
    entry = catalogue_entry(run_dir, REPO, revision="dev")  # a branch resolves to its commit
    assert entry["revision"] == result["commit"] and entry["license"] == "cc-by-sa-4.0"
    # the sample dump's model is named as `ulmfit prepare --sample` names its corpus
    assert entry["name"].startswith("en-sample-sp") and entry["directions"] == ["fwd", "bwd"]
    assert entry["sha256"] == {f: file_digest(run_dir / f) for f in (FWD, "bwd/model.safetensors")}
    assert entry["metrics"]["fwd"]["valid_ppl"] > 1
    assert catalogue_entry(f"hf-hub:{REPO}", REPO, revision="dev")["sha256"] == entry["sha256"]
    with pytest.raises(UlmfitError, match="has no fwd/model.safetensors"):
        catalogue_entry(run_dir, REPO)  # main holds only .gitattributes
    (run_dir / FWD).write_bytes((run_dir / FWD).read_bytes() + b" ")
    with pytest.raises(UlmfitError, match="differs from the one in"):
        catalogue_entry(run_dir, REPO, revision="dev")


def test_classifier_directory_is_published_with_its_eval_results(hub, sp_model_dir, tmp_path):
    clf = tmp_path / "classifier"
    shutil.copytree(sp_model_dir, clf)
    config = json.loads((clf / "config.json").read_text())
    config |= {"format": "ulmfit-classifier", "format_version": 1, "labels": ["neg", "pos"], "multi_label": False,
               "head": {"seq_len": 72, "max_len": 1440, "drop_mult": 0.5},
               "arch": {k: config["arch"][k] for k in ("emb_sz", "n_hid", "n_layers", "pad_token", "bidir")},
               "lm": {"spec": "hf-hub:tester/en-tiny", "pretrained": True},
               "metrics": {"fwd": {"accuracy": 0.7}, "bwd": {"accuracy": 0.72}, "ensemble": {"accuracy": 0.75}},
               "eval_results": [{"task_id": "text-classification", "task_name": "Sentiment", "dataset_name": "IMDb",
                                 "dataset_type": "stanfordnlp/imdb", "dataset_split": "test",
                                 "metric_type": "accuracy", "metric_name": "Accuracy (ensemble)",
                                 "metric_value": 0.75}]}
    write_json(clf / "config.json", config)
    write_json(clf / "labels.json", ["neg", "pos"])
    result = push_model(clf, "tester/en-tiny-imdb")
    assert "labels.json" in result["files"] and "labels.json" in hub.files("tester/en-tiny-imdb")
    card = ModelCard(hub.files("tester/en-tiny-imdb")["README.md"].decode())
    assert "text-classification" in card.data.tags and card.data.base_model == "tester/en-tiny"
    assert [(r.dataset_type, r.metric_value) for r in card.data.eval_results] == [("stanfordnlp/imdb", 0.75)]
    path = download_model("tester/en-tiny-imdb")
    assert json.loads((path / "labels.json").read_text()) == ["neg", "pos"]
    assert set(PUBLISHED_FILES) >= {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    with pytest.raises(UlmfitError, match="is a classifier; the catalogue names language models"):
        catalogue_entry(clf, "tester/en-tiny-imdb")


def test_push_keeps_a_card_edited_on_the_hub_unless_asked_to_replace_it(hub, run_dir, tmp_path):
    first = push_model(run_dir, REPO)
    assert first["card"] == "written" and "README.md" in first["files"]
    edited = hub.files(REPO)["README.md"].decode().replace("## Limitations", "## Limitations\n\nEdited by hand.")
    HfApi().upload_file(path_or_fileobj=edited.encode(), path_in_repo="README.md", repo_id=REPO)
    again = push_model(run_dir, REPO)
    assert again["card"] == "kept" and "README.md" not in again["files"]
    assert hub.files(REPO)["README.md"].decode() == edited
    bench = tmp_path / "results.json"
    bench.write_text(json.dumps({"rows": [{"task": "en/trec6", "metric": "accuracy", "fwd": 0.9, "ensemble": 0.92,
                                           "dataset": "CogComp/trec", "split": "test"}]}))
    runner = CliRunner()
    merged = runner.invoke(app, ["push", str(run_dir), "--repo-id", REPO, "--bench-results", str(bench)])
    assert merged.exit_code == 0, merged.output
    assert "kept the model card" in merged.output and "--replace-card" in merged.output
    card = ModelCard(hub.files(REPO)["README.md"].decode())
    assert "Edited by hand." in card.text and "en/trec6" not in card.text  # the text is the edited one
    results = {(r.dataset_type, r.metric_name): r.metric_value for r in card.data.eval_results}
    assert results[("CogComp/trec", "accuracy (ensemble)")] == 0.92
    assert any(r.metric_type == "perplexity" for r in card.data.eval_results)  # the old model-index stays
    assert "CogComp/trec" in card.data.datasets
    replaced = runner.invoke(app, ["push", str(run_dir), "--repo-id", REPO, "--bench-results", str(bench),
                                   "--replace-card"])
    assert replaced.exit_code == 0, replaced.output
    text = hub.files(REPO)["README.md"].decode()
    assert "Edited by hand." not in text and "| en/trec6 | accuracy |" in text


def test_from_pretrained_takes_huggingface_hubs_arguments(hub, run_dir, tmp_path):
    first = push_model(run_dir, REPO, private=True)
    dev = push_model(run_dir, REPO, revision="dev")
    hub.monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(UlmfitError, match="private and no token is set"):
        from_pretrained(REPO)
    lm = from_pretrained(REPO, token=TOKEN)  # a bare ORG/NAME, a private repository, an explicit token
    assert lm.path.name == first["commit"] and lm.direction == "fwd"
    assert from_pretrained(REPO, token=TOKEN, revision="dev").path.name == dev["commit"]
    before = hub.gets(FWD)
    again = from_pretrained(REPO, token=TOKEN, force_download=True)
    assert again.path == lm.path and hub.gets(FWD) == before + 1
    elsewhere = from_pretrained(f"hf-hub:{REPO}", token=TOKEN, cache_dir=tmp_path / "my-cache")
    assert elsewhere.path.is_relative_to(tmp_path / "my-cache")
    hub.server.stop()
    assert from_pretrained(REPO, local_files_only=True).path == lm.path
    fwd, bwd = from_pretrained(REPO, local_files_only=True, direction="both")
    assert (fwd.direction, bwd.direction) == ("fwd", "bwd")


def test_save_pretrained_and_push_to_hub(hub, run_dir, tmp_path):
    lm = from_pretrained(run_dir)
    with torch.no_grad():
        lm.model[1].decoder.bias += 1  # as if fine-tuned
    saved = lm.save_pretrained(tmp_path / "saved")
    again, bwd = from_pretrained(saved, direction="both")
    assert torch.equal(again.model[1].decoder.bias, lm.model[1].decoder.bias)
    original_bwd = from_pretrained(run_dir, direction="bwd")
    assert torch.equal(bwd.model[0].encoder.weight, original_bwd.model[0].encoder.weight)
    assert json.loads((saved / "config.json").read_text())["arch"] == lm.config["arch"]
    assert (saved / "README.md").is_file() and (saved / "spm.model").read_bytes() == (run_dir / "spm.model").read_bytes()
    assert not (saved / "checkpoints").exists() and not (saved / "run.json").exists()
    assert lm.save_pretrained(saved) == saved  # a model directory is replaced
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(UlmfitError, match="holds other files"):
        lm.save_pretrained(tmp_path / "busy")

    result = lm.push_to_hub("tester/en-tiny-ft", commit_message="fine-tuned")
    hub.monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "fresh-home" / "hub"))
    pulled = from_pretrained("tester/en-tiny-ft")
    assert pulled.path.name == result["commit"] and pulled.path.is_relative_to(tmp_path / "fresh-home")
    assert torch.equal(pulled.model[1].decoder.bias, lm.model[1].decoder.bias)
    assert ModelCard(hub.files("tester/en-tiny-ft")["README.md"].decode()).data.model_name == "en-tiny-ft"
