"""`ulmfit convert` and third-party catalogue entries, on tiny checkpoints built here in each legacy format.

Each builder writes what the original publisher wrote: a fastai AWD-LSTM state dict under its old key names saved
with `torch.save`, the word list saved with `pickle.dump`, and the archive layout of the release; the
SentencePiece model is trained by fastai's own `SentencePieceTokenizer`, as fastai_ulmfit's was.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import random
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from tests.file_server import serve
from ulmfit.cli import app
from ulmfit.errors import UlmfitError
from ulmfit.pretrain.tokenizer import SPECIAL_TOKENS
from ulmfit.zoo.catalogue import builtin_entries, validate_entry
from ulmfit.zoo.convert import convert
from ulmfit.zoo.legacy_formats import FORMATS
from ulmfit.zoo.third_party import fetch_third_party
from ulmfit.zoo.pretrained import from_pretrained

torch.set_num_threads(1)

# fastai v1's order of its special tokens (fastai v1 text/transform.py `defaults.text_spec_tok`).
V1_SPECIALS = ["xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxmaj", "xxup", "xxrep", "xxwrep"]
EN_WORDS = ["the", ".", "cat", "sat", "on", "a", "mat", ",", "dog", "ran", "and", "of", "to", "in", "was", "house"]
TH_WORDS = ["แมว", "กิน", "ปลา", "หมา", "วิ่ง", "ใน", "บ้าน", "และ", " ", "ที่"]


class Metadata:
    """An object that `torch.load(weights_only=True)` cannot load: it needs this class."""

    def __init__(self, note: str):
        self.note = note


class RunsCode:
    """A pickle that would run a shell command when loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# --- building legacy checkpoints ----------------------------------------------------------------------------------

def tiny_lm(vocab_size: int, n_layers: int = 2, seed: int = 0) -> torch.nn.Module:
    from fastai.text.models.awdlstm import AWD_LSTM, awd_lstm_lm_config
    from fastai.text.models.core import get_language_model

    torch.manual_seed(seed)
    model = get_language_model(AWD_LSTM, vocab_size, config=dict(awd_lstm_lm_config, emb_sz=8, n_hid=12,
                                                                  n_layers=n_layers))
    with torch.no_grad():
        model[1].decoder.bias.normal_()  # so that every token has its own logit
    return model.eval()


def v1_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as fastai v1 saved it: each LSTM also holds its dropped-out `module.weight_hh_l0` copy."""
    state = {}
    for key, value in model.state_dict().items():
        state[key] = value
        if key.endswith("weight_hh_l0_raw"):
            state[key.replace("weight_hh_l0_raw", "module.weight_hh_l0")] = value.clone()
    return state


def tgz(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as t:
        t.add(folder, arcname=folder.name)
    return archive


def wt103_archive(tmp: Path, direction: str, itos: list[str], seed: int) -> tuple[Path, torch.nn.Module]:
    """fastai's wt103-{fwd,bwd}.tgz: a folder with lstm_{dir}.pth and itos_wt103.pkl."""
    folder = tmp / "build" / f"wt103-{direction}"
    folder.mkdir(parents=True)
    model = tiny_lm(len(itos), seed=seed)
    torch.save(v1_state_dict(model), folder / f"lstm_{direction}.pth")
    with open(folder / "itos_wt103.pkl", "wb") as f:
        pickle.dump(itos, f)
    return tgz(folder, tmp / f"wt103-{direction}.tgz"), model


@pytest.fixture
def wt103(tmp_path):
    """Both WT103 archives in one folder, their source models and their (fastai v1 ordered) word list."""
    itos = V1_SPECIALS + EN_WORDS
    src = tmp_path / "downloads"
    src.mkdir()
    fwd, fwd_model = wt103_archive(tmp_path, "fwd", itos, seed=1)
    bwd, bwd_model = wt103_archive(tmp_path, "bwd", itos, seed=2)
    fwd.rename(src / fwd.name)
    bwd.rename(src / bwd.name)
    return src, {"fwd": fwd_model, "bwd": bwd_model}, itos


def thai2fit_files(folder: Path, itos: list[str]) -> tuple[Path, torch.nn.Module]:
    """PyThaiNLP's thwiki_model_lstm.pth (fastai v1, 4 layers, saved with its optimizer) and thwiki_itos.pkl."""
    folder.mkdir(parents=True, exist_ok=True)
    model = tiny_lm(len(itos), n_layers=4, seed=3)
    opt = torch.optim.Adam(model.parameters())
    model(torch.tensor([[2, 9, 10]]))[0].sum().backward()
    opt.step()
    model.eval()
    torch.save({"model": v1_state_dict(model), "opt": opt.state_dict()}, folder / "thwiki_model_lstm.pth")
    with open(folder / "thwiki_itos.pkl", "wb") as f:
        pickle.dump(itos, f)
    (folder / "ttc_freq.txt").write_text("other corpora share this folder\n", encoding="utf-8")
    return folder / "thwiki_model_lstm.pth", model


GERMAN = ["Der Hund lief durch den Wald und der Fuchs sah ihm zu.", "Die Katze schlief auf dem Dach des Hauses.",
          "Im Winter fällt Schnee auf die Berge, und die Kinder fahren Schlitten.",
          "ÜBER DEN FLUSS führt eine Brücke."]


def fastai_ulmfit_release(tmp: Path) -> tuple[Path, dict, list[str], object]:
    """A fastai_ulmfit .tgz: fwd/ and bwd/ (model.pth, vocab.pkl, model.json) and spm/spm.model, made by fastai."""
    from fastai.text.core import SentencePieceTokenizer, Tokenizer, defaults
    from fastai.text.data import make_vocab

    rng = random.Random(0)
    texts = [" ".join(rng.sample(GERMAN, 2)) for _ in range(200)]
    release = tmp / "build" / "ulmfit-dewiki"
    sp_tok = SentencePieceTokenizer(lang="de", vocab_sz=120, cache_dir=release / "spm")
    sp_tok.setup(texts, rules=defaults.text_proc_rules)
    tok = Tokenizer(SentencePieceTokenizer(lang="de", sp_model=release / "spm" / "spm.model",
                                           cache_dir=release / "spm"))
    counts = Counter(p for text in texts for p in tok(text))
    vocab = make_vocab(counts, min_freq=3)
    models = {}
    for seed, direction in enumerate(("fwd", "bwd")):
        folder = release / direction
        folder.mkdir()
        models[direction] = tiny_lm(len(vocab), seed=10 + seed)
        torch.save(models[direction].state_dict(), folder / "de_wikitext_model.pth")
        with open(folder / "de_wikitext_vocab.pkl", "wb") as f:
            pickle.dump(vocab, f)
        (folder / "model.json").write_text(json.dumps(
            {"tokenizer": {"class": "SentencePieceTokenizer", "params": {"lang": "de", "vocab_sz": 120}}}))
    return tgz(release, tmp / "ulmfit-dewiki.tgz"), models, vocab, tok


# --- helpers -------------------------------------------------------------------------------------------------------

@torch.no_grad()
def logits(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    model.reset()
    return model(torch.tensor([ids]))[0][0]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the three formats ---------------------------------------------------------------------------------------------

def test_wt103_both_directions_give_the_same_logits(wt103, tmp_path):
    src, models, old_itos = wt103
    out = convert(src, tmp_path / "en-wt103")
    config = json.loads((out / "config.json").read_text())
    assert config["format"] == "ulmfit-model" and config["lang"] == "en" and config["directions"] == ["bwd", "fwd"]
    assert config["arch"]["emb_sz"] == 8 and config["arch"]["n_hid"] == 12 and config["arch"]["n_layers"] == 2
    assert config["tokenizer"]["type"] == "word" and "replace_maj" in config["tokenizer"]["rules"]
    record = config["converted_from"]
    assert record["format"] == "fastai-wt103" and config["license"] == "unknown"
    assert record["files"] == {f: sha256(src / f) for f in ("wt103-bwd.tgz", "wt103-fwd.tgz")}
    itos = json.loads((out / "vocab.json").read_text())
    assert itos[:9] == SPECIAL_TOKENS and sorted(itos) == sorted(old_itos)  # a permutation: fastai v2's order first
    new_id = [itos.index(t) for t in old_itos]
    old_ids = [old_itos.index(t) for t in ["xxbos", "xxmaj", "the", "cat", "sat", "on", "a", "mat", "."]]
    fwd, bwd = from_pretrained(out, direction="both")
    for lm, source in ((fwd, models["fwd"]), (bwd, models["bwd"])):
        got = logits(lm.model, [new_id[i] for i in old_ids])
        want = logits(source, old_ids)
        assert torch.allclose(got[:, new_id], want, atol=1e-6)
    ids = fwd.encode("The cat sat on a mat.")
    assert [itos[i] for i in ids] == ["xxbos", "xxmaj", "the", "cat", "sat", "on", "a", "mat", "."]
    assert fwd.decode(ids) == "The cat sat on a mat."
    assert "fastai's WikiText-103" in (out / "README.md").read_text()


def test_a_special_token_the_old_vocabulary_lacks_gets_the_mean_row(tmp_path):
    old_itos = [t for t in V1_SPECIALS if t != "xxeos"] + EN_WORDS
    folder = tmp_path / "wt103-fwd"
    folder.mkdir()
    model = tiny_lm(len(old_itos))
    torch.save(v1_state_dict(model), folder / "lstm_fwd.pth")
    (folder / "itos_wt103.json").write_text(json.dumps(old_itos))
    lm = from_pretrained(convert(folder, tmp_path / "out"))
    emb = lm.model[0].encoder.weight
    assert emb.shape[0] == len(old_itos) + 1
    assert torch.allclose(emb[SPECIAL_TOKENS.index("xxeos")], model[0].encoder.weight.mean(0))
    assert torch.equal(emb[SPECIAL_TOKENS.index("xxmaj")], model[0].encoder.weight[old_itos.index("xxmaj")])


def test_fastai_ulmfit_release_keeps_its_sentencepiece_ids(tmp_path):
    import sentencepiece as spm

    archive, models, old_vocab, fastai_tok = fastai_ulmfit_release(tmp_path)
    out = convert(archive, tmp_path / "de")
    config = json.loads((out / "config.json").read_text())
    assert config["lang"] == "de" and config["converted_from"]["format"] == "fastai-ulmfit"
    assert config["drop_mult"] == 0.5 and config["directions"] == ["bwd", "fwd"]
    assert config["converted_from"]["files"] == {"ulmfit-dewiki.tgz": sha256(archive)}
    sp = spm.SentencePieceProcessor(model_file=str(out / "spm.model"))
    assert config["vocab_size"] == sp.get_piece_size()
    fwd, bwd = from_pretrained(out, direction="both")
    # The same text gives the same pieces as fastai's pipeline did (rules, case markers, xxbos).
    text = "Der Hund sah die Katze ÜBER DEN FLUSS."
    assert [sp.id_to_piece(i) for i in fwd.encode(text)] == list(fastai_tok(text))
    # the case markers are undone (fastai's rules lower "ÜBER" for good: they only mark ASCII capitals)
    assert fwd.decode(fwd.encode("Der Hund sah die Katze AM FLUSS.")) == "Der Hund sah die Katze AM FLUSS."
    # Every piece the old vocabulary had keeps its row: the same logits on the same pieces.
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    both = [(i, old_vocab.index(p)) for i, p in enumerate(pieces) if p in old_vocab]
    assert len(both) > 30
    new_ids, old_ids = map(list, zip(*both))
    for lm, source in ((fwd, models["fwd"]), (bwd, models["bwd"])):
        got = logits(lm.model, new_ids[:20])
        want = logits(source, old_ids[:20])
        assert torch.allclose(got[:, new_ids], want[:, old_ids], atol=1e-6)
    # A piece fastai never saw (<unk>) takes the row fastai fed the model for it: xxunk's.
    unk_row = models["fwd"][0].encoder.weight[old_vocab.index("xxunk")]
    assert torch.equal(fwd.model[0].encoder.weight[sp.unk_id()], unk_row)


def test_thai2fit_from_its_weights_file(tmp_path):
    itos = V1_SPECIALS + TH_WORDS
    weights, model = thai2fit_files(tmp_path / "pythainlp-data", itos)
    out = convert(weights, tmp_path / "th")
    config = json.loads((out / "config.json").read_text())
    assert config["lang"] == "th" and config["directions"] == ["fwd"]
    assert config["converted_from"]["format"] == "thai2fit" and config["license"] == "mit"
    assert config["arch"]["n_layers"] == 4 and config["arch"]["output_p"] == 0.25 and config["drop_mult"] == 0.9
    assert set(config["converted_from"]["files"]) == {"thwiki_model_lstm.pth", "thwiki_itos.pkl"}
    lm = from_pretrained(out)
    ids = lm.encode("แมวกินปลา")
    new_itos = json.loads((out / "vocab.json").read_text())
    assert [new_itos[i] for i in ids] == ["xxbos", "แมว", "กิน", "ปลา"]
    assert lm.decode(ids) == "แมวกินปลา"
    old_ids = [itos.index(new_itos[i]) for i in ids]
    perm = [new_itos.index(t) for t in itos]
    assert torch.allclose(logits(lm.model, ids)[:, perm], logits(model, old_ids), atol=1e-6)


# --- pickles -------------------------------------------------------------------------------------------------------

def test_weights_that_need_classes_are_refused_unless_allowed(tmp_path, caplog):
    folder = tmp_path / "wt103-fwd"
    folder.mkdir()
    itos = V1_SPECIALS + EN_WORDS
    model = tiny_lm(len(itos))
    torch.save({"model": model.state_dict(), "meta": Metadata("trained long ago")}, folder / "lstm_fwd.pth")
    with open(folder / "itos_wt103.pkl", "wb") as f:
        pickle.dump(itos, f)
    with pytest.raises(UlmfitError, match=r"needs arbitrary Python objects \(.*Metadata\).*--allow-pickle"):
        convert(folder, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    with caplog.at_level(logging.WARNING, logger="ulmfit"):
        out = convert(folder, tmp_path / "allowed", allow_pickle=True)
    assert any("full pickle" in r.message for r in caplog.records)
    assert torch.equal(from_pretrained(out).model[1].decoder.bias[SPECIAL_TOKENS.index("xxmaj")],
                       model[1].decoder.bias[V1_SPECIALS.index("xxmaj")])


@pytest.mark.parametrize("allow_pickle", [False, True])
def test_a_vocabulary_pickle_that_runs_code_is_refused(tmp_path, allow_pickle):
    folder = tmp_path / "wt103-fwd"
    folder.mkdir()
    torch.save(v1_state_dict(tiny_lm(len(V1_SPECIALS) + 1)), folder / "lstm_fwd.pth")
    marker = tmp_path / "pwned"
    with open(folder / "itos_wt103.pkl", "wb") as f:
        pickle.dump([*V1_SPECIALS, RunsCode(marker)], f)
    with pytest.raises(UlmfitError, match=r"asks to load (posix|nt|os)\.system.*refused"):
        convert(folder, tmp_path / "out", allow_pickle=allow_pickle)
    assert not marker.exists() and not (tmp_path / "out").exists()


# fastai 0.7's spellings of the special tokens (the ULMFiT paper's imdb scripts), in the order of a real itos.
OLD_SPECIALS = ["_unk_", "_pad_", "xbos", "xfld", "t_up", "tk_rep", "tk_wrep"]


def v1_learn_save(folder: Path, itos: list[str], opt_extra: dict | None = None) -> torch.nn.Module:
    """What fastai v1's `learn.save('lm')` wrote, by torch 1.x (the legacy, not zip, format): `models/lm.pth` holding
    `{'model': state_dict, 'opt': OptimWrapper.state_dict()}`. The state dict's tied embedding, its dropout copy
    and the decoder share one storage; the optimizer state holds the torch optimizer's state, numpy scalars and
    arrays (fastai v1 kept learning rates as numpy values), a dtype and `partial(optim.Adam, ...)`."""
    import functools

    import numpy as np

    model = tiny_lm(len(itos), seed=4)
    opt = torch.optim.Adam(model.parameters())
    model(torch.tensor([[2, 9, 10]]))[0].sum().backward()
    opt.step()
    model.eval()
    state = v1_state_dict(model)
    assert state["0.encoder.weight"].data_ptr() == state["1.decoder.weight"].data_ptr()
    wrapper = {"opt_state": opt.state_dict(), "lr": [np.float64(1e-3), np.float64(3e-3)], "wd": np.float32(0.01),
               "beta": None, "mom": np.float64(0.9), "opt_func": functools.partial(torch.optim.Adam, betas=(0.9, 0.99)),
               "true_wd": True, "bn_wd": True, "lr_range": np.array([1e-3, 3e-3]), "dtype": np.dtype("float32")}
    (folder / "models").mkdir(parents=True)
    torch.save({"model": state, "opt": wrapper | (opt_extra or {})}, folder / "models" / "lm.pth",
               _use_new_zipfile_serialization=False)
    with open(folder / "itos.pkl", "wb") as f:
        pickle.dump(itos, f)
    return model


def test_a_fastai_v1_learn_save_file_converts_without_allow_pickle(tmp_path):
    itos = OLD_SPECIALS + EN_WORDS
    model = v1_learn_save(tmp_path / "old-lm", itos)
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "old-lm"), "--to", str(tmp_path / "new"),
                                      "--lang", "en"])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "new" / "config.json").read_text())
    assert config["converted_from"]["format"] == "fastai" and "fastai_replace_maj" in config["tokenizer"]["rules"]
    new_itos = json.loads((tmp_path / "new" / "vocab.json").read_text())
    assert new_itos[:9] == SPECIAL_TOKENS and "_unk_" not in new_itos and "xbos" not in new_itos
    lm = from_pretrained(tmp_path / "new")
    renamed = dict(zip(OLD_SPECIALS, ["xxunk", "xxpad", "xxbos", "xxfld", "xxup", "xxrep", "xxwrep"]))
    new_id = {t: new_itos.index(renamed.get(t, t)) for t in itos}
    emb, old_emb = lm.model[0].encoder.weight, model[0].encoder.weight
    for i, old in enumerate(itos):  # every token, special ones included, keeps its row
        assert torch.equal(emb[new_id[old]], old_emb[i]), old
    assert torch.allclose(emb[new_itos.index("xxmaj")], old_emb.mean(0))  # fastai 0.7 had no xxmaj
    words = ["xbos", "the", "cat", "sat", "on", "a", "mat", "."]
    perm = [new_id[t] for t in itos]
    got = logits(lm.model, [new_id[w] for w in words])[:, perm]
    assert torch.allclose(got, logits(model, [itos.index(w) for w in words]), atol=1e-6)


def test_a_pickle_in_the_optimizer_state_that_would_run_code_is_still_refused(tmp_path):
    marker = tmp_path / "pwned"
    v1_learn_save(tmp_path / "old-lm", OLD_SPECIALS + EN_WORDS, {"callback": RunsCode(marker)})
    with pytest.raises(UlmfitError, match=r"needs arbitrary Python objects \((posix|nt|os)\.system\).*--allow-pickle"):
        convert(tmp_path / "old-lm", tmp_path / "new", lang="en")
    assert not marker.exists() and not (tmp_path / "new").exists()


def test_a_fastai_checkpoint_without_a_language_asks_for_one(tmp_path):
    v1_learn_save(tmp_path / "old-lm", OLD_SPECIALS + EN_WORDS)
    with pytest.raises(UlmfitError, match="does not say its language .*give it with --lang"):
        convert(tmp_path / "old-lm", tmp_path / "new")


# --- bad input -----------------------------------------------------------------------------------------------------

def test_bad_checkpoints_fail_with_one_sentence(wt103, tmp_path):
    src, _, itos = wt103
    archive = src / "wt103-fwd.tgz"
    cut = tmp_path / "cut" / "wt103-fwd.tgz"
    cut.parent.mkdir()
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(UlmfitError, match="not a complete archive.*download it again"):
        convert(cut, tmp_path / "a")
    folder = tmp_path / "partial" / "wt103-fwd"
    folder.mkdir(parents=True)
    with tarfile.open(archive) as t:
        t.extractall(folder.parent, filter="data")
    weights = folder / "lstm_fwd.pth"
    weights.write_bytes(weights.read_bytes()[:-200])
    with pytest.raises(UlmfitError, match="not a readable PyTorch checkpoint.*truncated or corrupt"):
        convert(folder, tmp_path / "b")
    torch.save(v1_state_dict(tiny_lm(len(itos) + 3)), weights)
    with pytest.raises(UlmfitError, match="do not belong to the same model"):
        convert(folder, tmp_path / "c")
    torch.save(tiny_lm(len(itos))[0].state_dict(), weights)
    with pytest.raises(UlmfitError, match="encoder without its decoder"):
        convert(folder, tmp_path / "d")
    with pytest.raises(UlmfitError, match="unknown checkpoint format 'bert'"):
        convert(folder, tmp_path / "e", format="bert")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("mine")
    with pytest.raises(UlmfitError, match="already exists and is not empty"):
        convert(src, tmp_path / "full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build", "cut", "downloads", "full", "partial"]


def test_cli_convert(wt103, tmp_path):
    src, _, _ = wt103
    runner = CliRunner()
    ok = runner.invoke(app, ["convert", str(src / "wt103-fwd.tgz"), "--to", str(tmp_path / "m")])
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "m" / "config.json").read_text())["directions"] == ["fwd"]
    bad = runner.invoke(app, ["convert", str(src / "wt103-fwd.tgz"), "--to", str(tmp_path / "m2"), "--lang", "qqq"])
    assert bad.exit_code == 1 and "error:" in bad.output


# --- third-party catalogue entries --------------------------------------------------------------------------------

@pytest.fixture
def server(tmp_path):
    yield from serve(tmp_path / "www")


def catalogue_entry(name: str, base: str, sha256s: dict) -> dict:
    return {"name": name, "lang": "en", "tokenizer": {"type": "word", "vocab_size": 25}, "directions": ["fwd", "bwd"],
            "license": "unknown", "sha256": sha256s,
            "third_party": {"format": "fastai-wt103", "urls": {f: f"{base}/models/{f}" for f in sha256s}}}


def test_fetch_third_party_downloads_and_converts_once(wt103, server, tmp_path, monkeypatch):
    src, models, _ = wt103
    base = server.url
    for f in ("wt103-fwd.tgz", "wt103-bwd.tgz"):
        server.put(f"models/{f}", (src / f).read_bytes())
    catalogue = tmp_path / "catalogue.yaml"
    sums = {"wt103-fwd.tgz": sha256(src / "wt103-fwd.tgz"), "wt103-bwd.tgz": None}
    entry = catalogue_entry("en-test-wt103", base, sums)
    catalogue.write_text(yaml.safe_dump({"models": [entry]}))
    monkeypatch.setenv("ULMFIT_CATALOGUE", str(catalogue))
    monkeypatch.setenv("ULMFIT_CACHE", str(tmp_path / "cache"))
    with pytest.raises(UlmfitError, match="not in the cache"):
        from_pretrained("en-test-wt103", local_files_only=True)
    fwd = from_pretrained("en-test-wt103")
    assert sorted(p for p, _ in server.requests) == ["/models/wt103-bwd.tgz", "/models/wt103-fwd.tgz"]
    cached = tmp_path / "cache" / "third_party" / "en-test-wt103"
    assert fwd.path == cached and not (cached.parent / ".downloads" / "en-test-wt103").exists()
    config = json.loads((cached / "config.json").read_text())
    assert config["converted_from"]["catalogue_name"] == "en-test-wt103"
    assert config["converted_from"]["urls"] == entry["third_party"]["urls"]
    assert torch.equal(fwd.model[1].decoder.bias.sort().values, models["fwd"][1].decoder.bias.sort().values)
    bwd = from_pretrained("en-test-wt103", direction="bwd", local_files_only=True)
    assert bwd.direction == "bwd" and len(server.requests) == 2  # the second call makes no request


def test_third_party_downloads_obey_hf_home_and_hf_hub_offline(wt103, server, tmp_path, monkeypatch):
    from huggingface_hub import constants

    src, _, _ = wt103
    server.put("models/wt103-fwd.tgz", (src / "wt103-fwd.tgz").read_bytes())
    entry = validate_entry(catalogue_entry("en-test-wt103", server.url, {"wt103-fwd.tgz": None}) |
                           {"directions": ["fwd"], "metrics": {"fwd": {"valid_ppl": 29.5}}})
    monkeypatch.delenv("ULMFIT_CACHE", raising=False)
    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UlmfitError, match=r"en-test-wt103 is not in the cache \(.*hf-home/ulmfit/third_party/"
                                          r"en-test-wt103\) and downloads are off \(HF_HUB_OFFLINE=1.*it needs "
                                          r"wt103-fwd.tgz \(http://127.0.0.1"):
        fetch_third_party(entry)
    assert server.requests == []
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    path = fetch_third_party(entry)
    assert path == tmp_path / "hf-home" / "ulmfit" / "third_party" / "en-test-wt103"
    config = json.loads((path / "config.json").read_text())
    assert config["metrics"] == {"fwd": {"valid_ppl": 29.5}}  # the publisher's figures, named as such in the card
    card = (path / "README.md").read_text()
    assert "name: published with fastai's WikiText-103" in card and "original release published" in card
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert fetch_third_party(entry) == path  # converted once: offline is fine from now on
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert fetch_third_party(entry, force_download=True) == path and len(server.requests) == 2


def test_fetch_third_party_corrupt_downloads(wt103, server, tmp_path):
    src, _, _ = wt103
    base = server.url
    server.put("models/wt103-fwd.tgz", (src / "wt103-fwd.tgz").read_bytes()[:300])
    wrong = validate_entry(catalogue_entry("en-bad-sum", base, {"wt103-fwd.tgz": "0" * 64}))
    with pytest.raises(UlmfitError, match="is corrupt .*sha256.*download it anew"):
        fetch_third_party(wrong, cache_dir=tmp_path / "cache")
    unchecked = validate_entry(catalogue_entry("en-no-sum", base, {"wt103-fwd.tgz": None}))
    with pytest.raises(UlmfitError, match="not a complete archive.*downloaded files of en-no-sum were deleted"):
        fetch_third_party(unchecked, cache_dir=tmp_path / "cache")
    assert sorted((tmp_path / "cache").iterdir()) == [tmp_path / "cache" / ".downloads"]
    assert not [f for f in (tmp_path / "cache" / ".downloads").rglob("*") if f.is_file()]


@pytest.mark.parametrize("raw", [r for r in builtin_entries() if "third_party" in r], ids=lambda r: r["name"])
def test_builtin_third_party_entries_name_files_the_converter_finds(raw):
    entry = validate_entry(raw)
    assert entry.third_party["format"] in FORMATS
    files = list(entry.third_party["urls"])
    assert all(url.startswith("https://") for url in entry.third_party["urls"].values())
    if entry.third_party["format"] == "fastai-ulmfit":
        assert [f for f in files if f.endswith(".tgz")] == files
    elif not all(f.endswith(".tgz") for f in files):  # loose files: the weights and the word list
        assert sorted(Path(f).suffix for f in files) in ([".json", ".pth"], [".pkl", ".pth"])
    assert {"en-wt103", "th-thai2fit", "de-fastai-ulmfit-sp15k"} <= {r["name"] for r in builtin_entries()}
