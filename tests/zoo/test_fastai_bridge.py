"""The bridge to plain fastai, both ways: an exported model loads with fastai's own functions only, and what fastai
saved (`learn.save` with its vocabulary) converts back. The model card's code is run as a user would run it."""
from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from huggingface_hub import HfApi

from tests.conftest import REPO
from ulmfit.errors import UlmfitError
from ulmfit.zoo.convert import convert
from ulmfit.zoo.fastai_bridge import export_fastai, read_manifest
from ulmfit.zoo.hub import push_model
from ulmfit.zoo.pretrained import from_pretrained

TEXTS = ["The cat sat on the mat.", "A dog ran in the house, and the cat was there.",
         "Paris is the capital of France.", "The river runs through the old town."] * 16


def fastai_lm_learner(path: Path, name: str, tok, rules, config: dict, min_freq: int = 1):
    """Plain fastai: the data block and `language_model_learner` the card shows."""
    from fastai.text.all import (AWD_LSTM, ColReader, DataBlock, RandomSplitter, TextBlock, awd_lstm_lm_config,
                                 language_model_learner)

    dls = DataBlock(blocks=TextBlock.from_df("text", is_lm=True, tok=tok, rules=rules, min_freq=min_freq),
                    get_x=ColReader("text"), splitter=RandomSplitter(0.1, seed=0)
                    ).dataloaders(pd.DataFrame({"text": TEXTS}), bs=4, seq_len=12, num_workers=0)
    arch = {k: config[k] for k in ("emb_sz", "n_hid", "n_layers")}
    return dls, language_model_learner(dls, AWD_LSTM, config=dict(awd_lstm_lm_config, **arch), path=path,
                                       pretrained_fnames=[name, name])


@pytest.mark.parametrize("kind", ["sentencepiece", "word"])
def test_plain_fastai_loads_an_exported_model(sp_model_dir, word_model_dir, tmp_path, kind):
    from fastai.text.all import (AWD_LSTM, CategoryBlock, ColReader, DataBlock, RandomSplitter, SentencePieceTokenizer,
                                 SpacyTokenizer, TextBlock, awd_lstm_clas_config, defaults, fix_html, replace_rep,
                                 replace_wrep, rm_useless_spaces, text_classifier_learner)

    model_dir = sp_model_dir if kind == "sentencepiece" else word_model_dir
    out = export_fastai(model_dir, tmp_path / "fastai-lm", name="en-tiny")
    manifest = read_manifest(out)
    assert manifest["pretrained_fnames"] == {"fwd": ["en-tiny", "en-tiny"], "bwd": ["en-tiny_bwd", "en-tiny"]}
    assert {p.name for p in (out / "models").iterdir()} == {"en-tiny.pth", "en-tiny_bwd.pth", "en-tiny.pkl"}
    ours = from_pretrained(model_dir)

    # --- from here on, fastai only ---
    if kind == "sentencepiece":
        tok = SentencePieceTokenizer(lang="en", sp_model=out / "spm.model")
        rules = [fix_html, replace_rep, replace_wrep, rm_useless_spaces]
        assert manifest["rules"] == ["fix_html", "replace_rep", "replace_wrep", "rm_useless_spaces"]
    else:
        tok, rules = SpacyTokenizer(lang="en"), defaults.text_proc_rules
        assert manifest["rules"] == [r.__name__ for r in defaults.text_proc_rules]
    dls, learn = fastai_lm_learner(out, "en-tiny", tok, rules, manifest["config"])
    with open(out / "models" / "en-tiny.pkl", "rb") as f:
        old_vocab = pickle.load(f)
    fastai_emb = learn.model[0].encoder.weight
    o2i = {t: i for i, t in enumerate(old_vocab)}  # the last of repeated tokens (make_vocab's xxfake padding)
    shared = [(i, o2i[t]) for i, t in enumerate(dls.vocab) if t in o2i]
    assert len(shared) > 20 and len(shared) > 0.5 * len(dls.vocab)
    for new, old in shared:  # every token both vocabularies have arrived with its pretrained row
        assert torch.equal(fastai_emb[new], ours.model[0].encoder.weight[old]), dls.vocab[new]
    for key, value in ours.model.state_dict().items():  # and the LSTM weights as they are
        if "rnns" in key:
            assert torch.equal(learn.model.state_dict()[key], value), key
    learn.save_encoder("finetuned")
    frame = pd.DataFrame({"text": TEXTS, "label": ["a", "b"] * (len(TEXTS) // 2)})
    clas_dls = DataBlock(blocks=(TextBlock.from_df("text", vocab=dls.vocab, tok=tok, rules=rules), CategoryBlock),
                         get_x=ColReader("text"), get_y=ColReader("label"), splitter=RandomSplitter(0.1, seed=0)
                         ).dataloaders(frame, bs=4, num_workers=0)
    arch = {k: manifest["config"][k] for k in ("emb_sz", "n_hid", "n_layers")}
    clf = text_classifier_learner(clas_dls, AWD_LSTM, config=dict(awd_lstm_clas_config, **arch), pretrained=False,
                                  path=out)
    clf.load_encoder("finetuned")
    assert torch.equal(clf.model[0].module.encoder.weight, fastai_emb)
    # --- fastai's text matches ours: the same tokens for the same text ---
    text = "The cat sat on the mat."
    fastai_tokens = [t if t in o2i else "xxunk" for t in dls.tokenizer(text)]
    if fastai_tokens[0] == "xxbos":  # fastai's lowercase rule writes the xxbos that ours adds as an id
        fastai_tokens = fastai_tokens[1:]
    assert fastai_tokens == [ours.tokenizer.itos[i] for i in ours.encode(text)[1:]]


def test_fastai_learn_save_converts_back(word_model_dir, tmp_path):
    """A model fine-tuned in fastai and saved by `learn.save` (with its optimizer) with its vocabulary comes back as
    a model directory with the same weights."""
    from fastai.text.all import SpacyTokenizer, defaults

    out = export_fastai(word_model_dir, tmp_path / "fastai-lm", name="lm")
    dls, learn = fastai_lm_learner(out, "lm", SpacyTokenizer(lang="en"), defaults.text_proc_rules,
                                   read_manifest(out)["config"])
    learn.fit_one_cycle(1, 1e-2)
    learn.save("finetuned")  # models/finetuned.pth: {"model": ..., "opt": ...}
    assert set(torch.load(out / "models" / "finetuned.pth", weights_only=False)) == {"model", "opt"}
    saved = tmp_path / "from-fastai"
    (saved / "models").mkdir(parents=True)
    os.replace(out / "models" / "finetuned.pth", saved / "models" / "finetuned.pth")
    with open(saved / "models" / "vocab.pkl", "wb") as f:
        pickle.dump(list(dls.vocab), f)
    with pytest.raises(UlmfitError, match="give it with --lang"):
        convert(saved, tmp_path / "back-without-lang")
    back = from_pretrained(convert(saved, tmp_path / "back", lang="en"))
    itos = back.tokenizer.itos
    emb = learn.model[0].encoder.weight
    for i, token in enumerate(dls.vocab):
        assert torch.equal(back.model[0].encoder.weight[itos.index(token)], emb[i]), token
    config = json.loads((tmp_path / "back" / "config.json").read_text())
    assert config["converted_from"]["format"] == "fastai" and config["arch"]["emb_sz"] == 64


def test_export_refuses_what_it_cannot_export(sp_model_dir, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(UlmfitError, match="holds other files"):
        export_fastai(sp_model_dir, tmp_path / "busy")
    with pytest.raises(UlmfitError, match="cannot be a file name"):
        export_fastai(sp_model_dir, tmp_path / "x", name="../x")
    first = export_fastai(sp_model_dir, tmp_path / "again")
    (first / "models" / "finetuned.pth").write_bytes(b"what fastai saved since")
    assert export_fastai(sp_model_dir, first) == first  # an earlier export is written again
    assert (first / "models" / "finetuned.pth").read_bytes() == b"what fastai saved since"
    (first / "fastai.json").unlink()  # as an export that stopped part-way leaves it
    assert export_fastai(sp_model_dir, first) == first and (first / "fastai.json").is_file()


@pytest.mark.slow
def test_every_snippet_of_the_model_card_runs(hub, run_dir, tmp_path):
    """The card of a pushed model, read from the Hub, run block by block in a fresh folder as a user would run it:
    the ulmfit Python code, the `ulmfit` commands (export-fastai among them), then the plain-fastai code."""
    push_model(run_dir, REPO)
    card = Path(HfApi().hf_hub_download(REPO, "README.md")).read_text()
    assert re.findall(r"```(python|bash)\n", card) == ["python", "bash", "bash", "python"]
    work = tmp_path / "user"
    work.mkdir()
    hub.run_card(card, work)
    assert (work / "fastai-lm" / "models" / "en-tiny.pth").is_file()
    assert (work / "fastai-lm" / "models" / "finetuned.pth").is_file()
