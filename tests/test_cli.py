"""The `ulmfit` command: the README's main job, listings, and one-line errors with non-zero exit codes."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from ulmfit import __version__
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


@pytest.mark.parametrize("args", [["list"], ["langs"], ["tasks"], ["--help"], ["bench", "--help"], ["--version"],
                                  ["info", "en-wt103"], ["info", "th-thai2fit"]])
def test_listing_commands_start_without_torch(args):
    """`list`, `info`, `langs`, `tasks` and `--help` import no torch, fastai or spaCy, so they start in well under a
    second (`python -X importtime -m ulmfit list` shows what each import costs)."""
    code = ("import sys\nfrom ulmfit.cli import app\ntry:\n    app(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\nheavy = [m for m in ('torch', 'fastai', 'spacy', 'sklearn', 'pandas', "
            "'datasets') if m in sys.modules]\nassert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_info_on_a_model_directory_starts_without_torch(tmp_path):
    from ulmfit.config import load_config
    from ulmfit.pretrain.modeldir import language_model_config

    config = language_model_config(load_config("tiny"), 10, "en", {"type": "sentencepiece", "file": "spm.model",
                                                                  "rules": []}) | {"directions": ["fwd"]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    code = ("import sys\nfrom ulmfit.cli import app\ntry:\n    app(['info', sys.argv[1]])\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\nassert 'torch' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "vocab_size: 10" in done.stdout


def test_version_and_choices_in_help():
    assert runner.invoke(app, ["--version"]).output.strip() == f"ulmfit {__version__}"
    for command, choices in (("pretrain", "[fwd|bwd|both]"), ("finetune", "[fwd|bwd|both]"),
                             ("bench", "[fwd|bwd|both]"), ("predict", "[ensemble|fwd|bwd]"),
                             ("prepare", "[sentencepiece|word]"),
                             ("convert", "[fastai-wt103|fastai-ulmfit|thai2fit|fastai]")):
        shown = runner.invoke(app, [command, "--help"], env={"COLUMNS": "250", "TERMINAL_WIDTH": "250"})
        assert shown.exit_code == 0 and choices in shown.output, command
    wrong = runner.invoke(app, ["pretrain", "x", "--out", "y", "--direction", "sideways"])
    assert wrong.exit_code == 1 and wrong.output == "error: unknown direction 'sideways': use fwd or bwd or both.\n"


def test_loading_a_model_prints_no_warnings(tmp_path):
    """fastai's `torch.jit.script` deprecation (and its pandas option warning) stay out of normal output, warnings
    shown as Python shows them to users of `python -W default`."""
    code = ("import ulmfit\nimport fastai.text.learner\nfrom fastai.text.models.awdlstm import awd_lstm_lm_config\n"
            "from ulmfit.pretrain.modeldir import build_language_model\n"
            "build_language_model({'arch': dict(awd_lstm_lm_config, emb_sz=8, n_hid=8, n_layers=1), 'vocab_size': 16})\n")
    done = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def _file_size_limit(limit: int):
    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize("tokenizer, limit, fragments", [
    ("word", 1024, ["File too large", "free space"]),  # Python's own writes: an OSError
    ("sentencepiece", 4096, ["could not write", "spm.model whole: is the disk full?"]),  # the trainer's C++ writes
])
def test_a_full_disk_is_one_line_and_keeps_the_corpus(tmp_path, tokenizer, limit, fragments):
    """A write the system refuses (files capped in size give EFBIG, as a full disk gives ENOSPC) ends in one line,
    exit status 1, and the corpus already there untouched."""
    out = tmp_path / "c"
    assert runner.invoke(app, ["prepare", "--sample", "--out", str(out), "--workers", "1"]).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    cmd = [sys.executable, "-m", "ulmfit", "prepare", "--sample", "--out", str(out), "--workers", "1",
           "--tokenizer", tokenizer, "--vocab-size", "300"]
    done = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=_file_size_limit(limit), timeout=300)
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert all(f in errors[0] for f in fragments), errors[0]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
