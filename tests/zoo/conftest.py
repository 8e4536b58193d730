"""Tiny model directories, trained once per test session, and the local Hub, for the zoo's tests.

huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE when it is imported, so the `hub` fixture sets the
environment (for subprocesses, which run `python -m ulmfit` as a user would) and points the already imported
`huggingface_hub.constants` at the same places (for the in-process tests).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants

from tests.hub_server import serve

from ulmfit.config import load_config
from ulmfit.pretrain.prepare import PrepareOptions, prepare_corpus
from ulmfit.pretrain.train import pretrain

torch.set_num_threads(1)
TINY = {"bs": 4, "bptt": 12, "epochs": 1}
TOKEN = "hf_local_test_token"
REPO = "tester/en-tiny"
FWD = "fwd/model.safetensors"


def _train(root: Path, tokenizer: str) -> Path:
    corpus = root / "corpus"
    prepare_corpus("en", corpus, sample=True, workers=1, options=PrepareOptions(tokenizer=tokenizer, min_freq=1))
    run = root / "run"
    pretrain(corpus, run, load_config("tiny", TINY), direction="both")
    return run


@pytest.fixture(scope="session")
def _sp_model(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("sp-model"), "sentencepiece")


@pytest.fixture(scope="session")
def _word_model(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("word-model"), "word")


def _copy(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


@pytest.fixture
def sp_model_dir(_sp_model, tmp_path) -> Path:
    """A fresh copy of a tiny SentencePiece model directory (fwd and bwd) that the test may change."""
    return _copy(_sp_model, tmp_path / "sp-model")


@pytest.fixture
def word_model_dir(_word_model, tmp_path) -> Path:
    """A fresh copy of a tiny word-level model directory (fwd and bwd) that the test may change."""
    return _copy(_word_model, tmp_path / "word-model")


def _point_client(monkeypatch, url: str, home: Path) -> None:
    """What huggingface_hub.constants would hold had HF_ENDPOINT and HF_HOME been set before its import."""
    values = {"ENDPOINT": url, "HUGGINGFACE_CO_URL_TEMPLATE": url + "/{repo_id}/resolve/{revision}/{filename}",
              "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_ASSETS_CACHE": str(home / "assets"),
              "HF_TOKEN_PATH": str(home / "token"), "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
              "AGENT_HARNESSES_PATH": str(home / ".agent_harnesses.json"), "HF_HUB_OFFLINE": False}
    for name, value in values.items():
        monkeypatch.setattr(constants, name, value)


class Hub:
    """The running local Hub, the client environment pointing at it, and helpers to drive both."""

    def __init__(self, server, env: dict, monkeypatch):
        self.server, self.state, self.env, self.monkeypatch = server, server.state, env, monkeypatch
        self.home = Path(env["HF_HOME"])

    def cli(self, *args: str, offline: bool = False) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))} | self.env
        if offline:
            env["HF_HUB_OFFLINE"] = "1"
        return subprocess.run([sys.executable, "-m", "ulmfit", *args], env=env, capture_output=True, text=True,
                              timeout=120)

    def offline(self) -> None:
        self.monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        self.monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    def files(self, repo_id: str, rev: str = "main") -> dict[str, bytes]:
        repo = self.state.load(repo_id)
        commit = repo["commits"][self.state.resolve(repo, rev)]
        return {path: self.state.blob(f["oid"]) for path, f in commit["files"].items()}

    def gets(self, path: str) -> int:
        """How many times the server sent a file's bytes."""
        return sum(1 for method, p in self.state.requests if method == "GET" and "/resolve/" in p
                   and p.endswith("/" + path))


@pytest.fixture
def hub(tmp_path, monkeypatch):
    server = serve(tmp_path / "hub-root")
    env = {"HF_ENDPOINT": server.url, "HF_HOME": str(tmp_path / "hf-home"), "HF_TOKEN": TOKEN,
           "HF_HUB_DISABLE_TELEMETRY": "1", "ULMFIT_CATALOGUE": str(tmp_path / "catalogue.yaml"),
           "NO_PROXY": "127.0.0.1,localhost"}
    for name in [k for k in os.environ if k.startswith(("HF_", "HUGGINGFACE_"))]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    _point_client(monkeypatch, server.url, tmp_path / "hf-home")
    yield Hub(server, env, monkeypatch)
    server.stop()


@pytest.fixture
def run_dir(sp_model_dir):
    """A tiny model directory as a run leaves it: with run state that must never be published."""
    (sp_model_dir / "checkpoints").mkdir(exist_ok=True)
    (sp_model_dir / "checkpoints" / "fwd-epoch0.pt").write_bytes(b"optimizer state")
    (sp_model_dir / "run.json").write_text("{}")
    return sp_model_dir
