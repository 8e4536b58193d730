"""Damaged, absurd and hostile model directories (issue 13): each gets one `error:` line that names the model and
the field or tensor, before anything the config asks for is allocated."""
from __future__ import annotations

import json
import os
import resource
import time

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from tests.faults import assert_one_line_error
from ulmfit.cli import app
from ulmfit.errors import UlmfitError
from ulmfit.pretrain.modeldir import ModelDir
from ulmfit.zoo.pretrained import from_pretrained

FWD = "fwd/model.safetensors"
runner = CliRunner()


def _set(model_dir, field: str, value) -> None:
    """Set `field` (dotted for nested keys) in the directory's config.json."""
    path = model_dir / "config.json"
    config = json.loads(path.read_text())
    *parents, key = field.split(".")
    section = config
    for name in parents:
        section = section[name]
    section[key] = value
    path.write_text(json.dumps(config))


def _generate(model_dir):
    return runner.invoke(app, ["generate", str(model_dir), "the", "--words", "2"])


@pytest.mark.parametrize("field, value, fragment", [
    ("vocab_size", 10 ** 12, "vocab_size = 1000000000000"),
    ("vocab_size", -3, "vocab_size = -3"),
    ("vocab_size", "351", "vocab_size = '351'"),
    ("arch.n_layers", 10 ** 6, "arch.n_layers = 1000000, but it must be an integer from 1 to 16"),
    ("arch.emb_sz", -64, "arch.emb_sz = -64"),
    ("arch.n_hid", 0, "arch.n_hid = 0"),
    ("arch.n_hid", 10 ** 9, "arch.n_hid"),
    ("arch.n_hid", 128.5, "arch.n_hid = 128.5"),
    ("arch.pad_token", 10 ** 6, "arch.pad_token"),
    ("arch.bidir", "no", "arch.bidir = 'no', but it must be true or false"),
    ("arch.weight_p", 1.5, "arch.weight_p = 1.5"),
    ("arch.hidden_p", -0.1, "arch.hidden_p"),
    ("arch.rnn_kind", "gru", "arch.rnn_kind"),
    ("drop_mult", 50, "drop_mult = 50"),
    ("arch", [64, 128], "arch = [64, 128], but it must be a JSON object"),
    ("tokenizer.type", "bpe", "tokenizer.type = 'bpe'"),
    ("tokenizer.file", "../../../etc/passwd", "tokenizer.file = '../../../etc/passwd'"),
    ("tokenizer.rules", ["rm_everything"], "tokenizer.rules"),
    ("directions", ["fwd", "up"], "directions"),
    ("directions", "fwd", "directions = 'fwd'"),
    ("directions", [], "directions = []"),
    ("lang", 42, "lang = 42"),
    ("lang", "qqq", "lang = 'qqq'"),
])
def test_absurd_config_is_one_line_before_anything_is_built(sp_model_dir, field, value, fragment):
    _set(sp_model_dir, field, value)
    start, peak = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(UlmfitError, match="config.json has"):
        ModelDir.open(sp_model_dir)
    assert time.perf_counter() - start < 1
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 100_000  # KiB: nothing big was allocated
    assert_one_line_error(_generate(sp_model_dir), str(sp_model_dir), fragment)


def test_missing_field_is_named(sp_model_dir):
    config = json.loads((sp_model_dir / "config.json").read_text())
    del config["arch"]["n_hid"]
    (sp_model_dir / "config.json").write_text(json.dumps(config))
    assert_one_line_error(_generate(sp_model_dir), "arch.n_hid = missing")


@pytest.mark.parametrize("content", [b"{not json", b"", b"\xff\xfe\x00garbage", b"[" * 100_000, b"null", b"[]",
                                     b'{"format": "ulmfit-model", "arch": NaN}'])
def test_corrupt_config_json(sp_model_dir, content):
    (sp_model_dir / "config.json").write_bytes(content)
    assert_one_line_error(runner.invoke(app, ["info", str(sp_model_dir)]), str(sp_model_dir), "config.json")
    assert_one_line_error(_generate(sp_model_dir), str(sp_model_dir), "config.json")


@pytest.mark.parametrize("damage, fragment", [
    ("empty", "not a readable safetensors file"),
    ("truncated header", "not a readable safetensors file"),
    ("truncated tensors", "not a readable safetensors file"),
    ("random bytes", "not a readable safetensors file"),
    ("a directory", "has no fwd model"),
])
def test_damaged_weights_file(sp_model_dir, damage, fragment):
    path = sp_model_dir / FWD
    raw = path.read_bytes()
    if damage == "a directory":
        path.unlink()
        path.mkdir()
    else:
        path.write_bytes({"empty": b"", "truncated header": raw[:50], "truncated tensors": raw[:len(raw) // 2],
                          "random bytes": os.urandom(len(raw))}[damage])
    assert_one_line_error(_generate(sp_model_dir), str(sp_model_dir), fragment)
    from_pretrained(sp_model_dir, direction="bwd")  # the other direction is unharmed


def _rewrite(model_dir, change) -> None:
    tensors = load_file(model_dir / FWD)
    change(tensors)
    save_file(tensors, model_dir / FWD, metadata={"format": "pt"})


def test_weights_that_do_not_match_the_config(sp_model_dir):
    _set(sp_model_dir, "arch.n_hid", 100)  # the file holds 128-wide layers
    assert_one_line_error(_generate(sp_model_dir), str(sp_model_dir), "0.rnns.0.weight_hh_l0_raw has the shape "
                          "(512, 128)", "call for (400, 100)")


def test_config_far_bigger_than_the_weights_is_refused_before_building(sp_model_dir):
    _set(sp_model_dir, "arch.n_hid", 16_000)
    _set(sp_model_dir, "arch.n_layers", 16)  # within the bounds, but about 30 billion numbers
    start = time.perf_counter()
    line = assert_one_line_error(_generate(sp_model_dir), str(sp_model_dir), "do not belong together")
    assert "describes a model of about 29,7" in line and time.perf_counter() - start < 5


@pytest.mark.parametrize("change, fragment", [
    (lambda t: t.pop("0.rnns.1.weight_hh_l0_raw"), "it lacks 0.rnns.1.weight_hh_l0_raw"),
    (lambda t: t.update({"0.encoder.weight": torch.zeros(5, 64)}), "0.encoder.weight has the shape (5, 64)"),
    (lambda t: t.update({"extra.weight": torch.zeros(2)}), "it holds extra.weight"),
    (lambda t: t.update({"1.decoder.bias": t["1.decoder.bias"].to(torch.int64)}), "1.decoder.bias is stored as I64"),
    (lambda t: t["0.encoder.weight"].__setitem__((3, 3), float("nan")), "NaN or infinite values in 0.encoder.weight"),
])
def test_weights_with_wrong_tensors(sp_model_dir, change, fragment):
    _rewrite(sp_model_dir, change)
    assert_one_line_error(_generate(sp_model_dir), str(sp_model_dir), fragment)


def test_damaged_tokenizer(sp_model_dir):
    (sp_model_dir / "spm.model").write_bytes(os.urandom(300))
    assert_one_line_error(_generate(sp_model_dir), "spm.model is not a readable SentencePiece model", "damaged or cut short")


def test_tokenizer_of_another_size(word_model_dir):
    vocab = json.loads((word_model_dir / "vocab.json").read_text())
    (word_model_dir / "vocab.json").write_text(json.dumps(vocab[:-5]))
    assert_one_line_error(_generate(word_model_dir), f"has {len(vocab) - 5:,} tokens but config.json says "
                          f"vocab_size {len(vocab):,}")
    (word_model_dir / "vocab.json").write_text('{"not": "a list"}')
    assert_one_line_error(_generate(word_model_dir), "vocab.json is not a ulmfit word vocabulary")


def test_a_corpus_or_an_unfinished_run_is_not_a_model(sp_model_dir, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "meta.json").write_text("{}")
    assert_one_line_error(_generate(corpus), "is a corpus written by `ulmfit prepare`", f"ulmfit pretrain {corpus}")
    (sp_model_dir / "config.json").unlink()
    assert_one_line_error(_generate(sp_model_dir), "pretraining run that has not finished", "--resume")
    with pytest.raises(UlmfitError, match="is a file, not a ulmfit model directory"):
        ModelDir.open(sp_model_dir / "spm.model")


def test_hub_repository_with_an_absurd_config_is_named(hub, sp_model_dir):
    from huggingface_hub import HfApi

    _set(sp_model_dir, "arch.n_layers", 10 ** 6)
    HfApi().create_repo("tester/absurd")
    HfApi().upload_folder(repo_id="tester/absurd", folder_path=sp_model_dir, allow_patterns=["*.json", "*.model",
                                                                                            "*/*.safetensors"])
    with pytest.raises(UlmfitError, match=r"^hf-hub:tester/absurd: config.json has arch.n_layers = 1000000"):
        from_pretrained("hf-hub:tester/absurd")
    result = hub.cli("info", "hf-hub:tester/absurd")  # a real process, as a user runs it
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]  # after the download bar
    assert errors == [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("error: hf-hub:tester/absurd: config.json has arch.n_layers")
