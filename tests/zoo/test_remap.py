"""Embedding remap: a word-level model moved into a task vocabulary, checked against fastai's `match_embeds`."""
from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from fastai.text.learner import match_embeds
from typer.testing import CliRunner

from ulmfit.cli import app
from ulmfit.errors import UlmfitError
from ulmfit.pretrain.modeldir import ModelDir
from ulmfit.pretrain.tokenizer import SPECIAL_TOKENS
from ulmfit.zoo.pretrained import from_pretrained
from ulmfit.zoo.remap import coverage, remap_embeddings, remap_language_model, remap_model_dir, task_vocab

NEW_WORDS = ["zyzzyva", "quokka"]


def pretrained_itos(model_dir) -> list[str]:
    return ModelDir.open(model_dir).tokenizer.itos


def task_itos(old: list[str]) -> list[str]:
    """A task vocabulary: the specials, some pretrained words in another order, and words the model never saw."""
    return SPECIAL_TOKENS + NEW_WORDS[:1] + old[20:9:-1] + NEW_WORDS[1:] + old[30:40]


@pytest.mark.parametrize("direction", ["fwd", "bwd"])
def test_remap_equals_fastai_match_embeds(word_model_dir, direction):
    old = pretrained_itos(word_model_dir)
    new = task_itos(old)
    model = ModelDir.open(word_model_dir).load_language_model(direction)
    expected = match_embeds({k: v.clone() for k, v in model.state_dict().items()}, old, new)
    remapped, _ = remap_language_model(word_model_dir, direction, new)
    got = remapped.state_dict()
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


def test_remap_semantics(word_model_dir):
    old = pretrained_itos(word_model_dir)
    new = task_itos(old)
    original = ModelDir.open(word_model_dir).load_language_model("fwd")
    emb, bias = original[0].encoder.weight.detach(), original[1].decoder.bias.detach()
    model, _ = remap_language_model(word_model_dir, "fwd", new)
    new_emb, new_bias = model[0].encoder.weight.detach(), model[1].decoder.bias.detach()
    assert new_emb.shape == (len(new), emb.shape[1])
    for i, token in enumerate(new):
        if token in NEW_WORDS:
            assert torch.allclose(new_emb[i], emb.mean(0)) and torch.isclose(new_bias[i], bias.mean())
        else:
            assert torch.equal(new_emb[i], emb[old.index(token)]) and new_bias[i] == bias[old.index(token)]
    # the encoder, its dropout copy and the tied decoder are one matrix
    assert model[1].decoder.weight is model[0].encoder.weight
    assert torch.equal(model[0].encoder_dp.emb.weight, new_emb)


def test_coverage_counts_task_tokens_and_occurrences():
    old = SPECIAL_TOKENS + ["a", "b", "c"]
    new = SPECIAL_TOKENS + ["a", "c", "d", "xxfake"]
    cov = coverage(old, new, Counter({"a": 5, "c": 3, "d": 2}))
    assert (cov.tokens, cov.tokens_found, cov.occurrences, cov.occurrences_found) == (3, 2, 10, 8)
    assert cov.token_share == pytest.approx(2 / 3) and cov.occurrence_share == pytest.approx(0.8)
    assert "2 of 3 task tokens" in str(cov) and "80.0%" in str(cov)


def test_remapped_model_dir_keeps_predictions_for_shared_words(word_model_dir, tmp_path):
    old = pretrained_itos(word_model_dir)
    texts = ["The river flows into the sea near the old city.", "A quokka and a zyzzyva live by the river."] * 2
    new, counts = task_vocab(texts, ModelDir.open(word_model_dir).config, min_freq=1)
    cov = remap_model_dir(word_model_dir, new, tmp_path / "task", counts)
    assert 0 < cov.tokens_found < cov.tokens and cov.occurrences == sum(counts[t] for t in cov_words(new))
    before = from_pretrained(word_model_dir)
    after = from_pretrained(tmp_path / "task")
    assert after.tokenizer.itos == new and after.config["vocab_size"] == len(new)
    sentence = " ".join(w for w in texts[0].lower().split() if w in old and w in new)  # shared words only
    ids_old, ids_new = before.encode(sentence), after.encode(sentence)
    assert len(ids_old) > 4 and [old[i] for i in ids_old] == [new[i] for i in ids_new]
    with torch.no_grad():
        before.model.reset(), after.model.reset()
        logits_old = before.model(torch.tensor([ids_old]))[0][0]
        logits_new = after.model(torch.tensor([ids_new]))[0][0]
    shared = [(new.index(t), old.index(t)) for t in cov_words(new) if t in old]  # not the xxfake padding
    cols_new, cols_old = zip(*shared)
    assert torch.allclose(logits_new[:, list(cols_new)], logits_old[:, list(cols_old)], atol=1e-5)
    assert ModelDir.open(tmp_path / "task").tokenizer.decode(after.encode("The quokka")) == "The quokka"


def cov_words(itos: list[str]) -> list[str]:
    return [t for t in itos if t not in SPECIAL_TOKENS and not t.startswith("xxfake")]


def test_sentencepiece_models_need_no_remap(sp_model_dir, tmp_path):
    with pytest.raises(UlmfitError, match="needs no remap"):
        remap_language_model(sp_model_dir, "fwd", SPECIAL_TOKENS + ["a"])
    with pytest.raises(UlmfitError, match="needs no remap"):
        remap_model_dir(sp_model_dir, SPECIAL_TOKENS + ["a"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_incompatible_inputs_are_refused(word_model_dir):
    old = pretrained_itos(word_model_dir)
    model = ModelDir.open(word_model_dir).load_language_model("fwd")
    state = model.state_dict()
    with pytest.raises(UlmfitError, match="does not belong to these weights"):
        remap_embeddings(state, old[:-8], SPECIAL_TOKENS + ["a"])
    with pytest.raises(UlmfitError, match="task vocabulary does not start with fastai's special tokens"):
        remap_embeddings(state, old, ["a", "b"] + SPECIAL_TOKENS)
    with pytest.raises(UlmfitError, match="not an AWD-LSTM language model"):
        remap_embeddings({"weight": torch.zeros(3, 3)}, old, old)


def test_cli_remap(word_model_dir, sp_model_dir, tmp_path):
    runner = CliRunner()
    texts = tmp_path / "task.txt"
    texts.write_text("the river and the sea\nthe quokka and the river\n", encoding="utf-8")
    result = runner.invoke(app, ["remap", str(word_model_dir), "--texts", str(texts), "--min-freq", "1",
                                 "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert "task tokens" in result.output and "quokka" in ModelDir.open(tmp_path / "a").tokenizer.itos
    vocab = tmp_path / "vocab.json"
    vocab.write_text(json.dumps(task_itos(pretrained_itos(word_model_dir))), encoding="utf-8")
    assert runner.invoke(app, ["remap", str(word_model_dir), "--vocab", str(vocab),
                               "--out", str(tmp_path / "b")]).exit_code == 0
    refused = runner.invoke(app, ["remap", str(sp_model_dir), "--vocab", str(vocab), "--out", str(tmp_path / "c")])
    assert refused.exit_code == 1 and "needs no remap" in refused.output
    occupied = runner.invoke(app, ["remap", str(word_model_dir), "--vocab", str(vocab), "--out", str(tmp_path / "a")])
    assert occupied.exit_code == 1 and "not empty" in occupied.output
    neither = runner.invoke(app, ["remap", str(word_model_dir), "--out", str(tmp_path / "d")])
    assert neither.exit_code == 1 and "--vocab" in neither.output
