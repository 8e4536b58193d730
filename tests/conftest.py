"""Fixtures shared by all tests: the real data beside the repository, figures to report, and the local Hub.

huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE when it is imported, so the `hub` fixture sets the
environment (for subprocesses, which run `python -m ulmfit` as a user would) and points the already imported
`huggingface_hub.constants` at the same places (for the in-process tests).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
from huggingface_hub import constants

from tests.hub_server import serve

# ../shared/data relative to the repository root: real corpora and gold files too big for the repository.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

_MEASURED: list[tuple[str, float, str]] = []
TOKEN = "hf_local_test_token"
REPO = "tester/en-tiny"
FWD = "fwd/model.safetensors"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder; the test is skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data is absent: {SHARED_DATA} does not exist")
    return SHARED_DATA


@pytest.fixture
def measured() -> Callable[..., None]:
    """Record a figure (a score, a speed) that the terminal summary prints after the run."""

    def record(name: str, value: float, detail: str = "") -> None:
        _MEASURED.append((name, value, detail))

    return record


def pytest_terminal_summary(terminalreporter) -> None:
    for name, value, detail in _MEASURED:
        terminalreporter.write_line(f"measured: {name} = {value:.4g}" + (f" ({detail})" if detail else ""))


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

    def run_card(self, card: str, cwd: Path) -> list[subprocess.CompletedProcess]:
        """Run the code of a model card as a user would, in `cwd`: each Python block as a script, each `ulmfit`
        line of a bash block as the command (not `pip install`); the first failure fails the test."""
        import re
        import shlex

        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))} | self.env
        done = []
        for kind, code in re.findall(r"```(python|bash)\n(.*?)```", card, flags=re.S):
            if kind == "python":
                (cwd / "snippet.py").write_text(code)
                commands = [[sys.executable, str(cwd / "snippet.py")]]
            else:
                commands = [[sys.executable, "-m", "ulmfit", *shlex.split(line)[1:]] for line in code.splitlines()
                            if line.startswith("ulmfit ")]
            for command in commands:
                done.append(subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600))
                assert done[-1].returncode == 0, f"{command}\n{done[-1].stdout}\n{done[-1].stderr}"
        return done

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
