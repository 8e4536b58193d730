"""The `ulmfit` command: the README's main job, listings, and one-line errors with non-zero exit codes."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from ulmfit.cli import app
from ulmfit.sample import SAMPLE_LANGS

runner = CliRunner()


def test_prepare_sample_default_language(tmp_path):
    result = runner.invoke(app, ["prepare", "--sample", "--out", str(tmp_path / "c"), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "language   en (English)" in result.output
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    assert meta["lang"] == "en" and meta["articles"]["train"] >= 4 and meta["articles"]["valid"] >= 1


@pytest.mark.parametrize("lang", [code for code in SAMPLE_LANGS if code != "en"])
def test_prepare_every_sample(tmp_path, lang):
    result = runner.invoke(app, ["prepare", lang, "--sample", "--out", str(tmp_path / "c"), "--workers", "1"])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    assert meta["lang"] == lang and meta["source"]["dbname"] == f"{lang}wiki"
    assert meta["tokens"]["train"] > 500 and meta["skipped"]["redirect"] == 1


def test_python_dash_m(tmp_path):
    done = subprocess.run([sys.executable, "-m", "ulmfit", "langs"], capture_output=True, text=True, check=True)
    assert "th " in done.stdout and "pythainlp" in done.stdout


def test_langs_lists_adapters_and_generic():
    own = runner.invoke(app, ["langs"])
    assert own.exit_code == 0 and "Vietnamese" in own.output and "generic" not in own.output
    every = runner.invoke(app, ["langs", "--all"])
    assert every.exit_code == 0 and "Esperanto" in every.output and "generic" in every.output


@pytest.mark.parametrize("args, message", [
    (["prepare", "xx!", "--sample"], "is not a language code"),
    (["prepare", "qqq", "--text", "."], "no Wikipedia with the code"),
    (["prepare", "en", "--dump", "/no/such/dump.xml.bz2"], "does not exist"),
    (["prepare", "en"], "give exactly one source"),
    (["prepare"], "give a language code"),
    (["prepare", "en", "--sample", "--tokenizer", "bpe"], "unknown tokenizer"),
    (["prepare", "ko", "--sample"], "no sample dump"),
])
def test_errors_are_one_line(tmp_path, args, message):
    result = runner.invoke(app, args + ["--out", str(tmp_path / "c")])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("error: ")
    assert message in result.output
    assert not (tmp_path / "c").exists()
