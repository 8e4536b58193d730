"""Moving a word-level language model into a task's vocabulary (ULMFiT's embedding transplant).

Rows of tokens that both vocabularies share are copied; a token the pretrained model never saw gets the mean
embedding row and the mean decoder bias. fastai's `match_embeds` does exactly this (and keeps the encoder, its
dropout copy and the tied decoder consistent), so it does the work here; this module adds the checks, the coverage
report and the model-directory plumbing. SentencePiece models need none of it: a task's text is encoded with the
model's own `spm.model`, so the vocabulary never changes.
"""
from __future__ import annotations

import logging
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from ulmfit.errors import UlmfitError
from ulmfit.langs import get_lang
from ulmfit.pretrain.modeldir import DIRECTIONS, ENCODER, FORMAT, ModelDir, build_language_model
from ulmfit.pretrain.tokenizer import SPECIAL_TOKENS, WordTokenizer, build_word_vocab

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Coverage:
    """How much of a task vocabulary the pretrained vocabulary covers, by distinct tokens and by occurrences."""

    tokens: int
    tokens_found: int
    occurrences: int | None = None
    occurrences_found: int | None = None

    @property
    def token_share(self) -> float:
        return self.tokens_found / self.tokens if self.tokens else 0.0

    @property
    def occurrence_share(self) -> float | None:
        if not self.occurrences:
            return None
        return self.occurrences_found / self.occurrences

    def __str__(self) -> str:
        text = f"{self.tokens_found:,} of {self.tokens:,} task tokens ({self.token_share:.1%}) are in the pretrained vocabulary"
        if self.occurrence_share is not None:
            text += f", covering {self.occurrence_share:.1%} of their {self.occurrences:,} occurrences"
        return text


def coverage(old_itos: list[str], new_itos: list[str], counts: Counter | None = None) -> Coverage:
    """The share of `new_itos` (and, given task token `counts`, of its occurrences) found in `old_itos`.

    fastai's special tokens and the `xxfake` padding that `make_vocab` adds are not task tokens: left out.
    """
    known = set(old_itos)
    words = [t for t in new_itos if t not in SPECIAL_TOKENS and not t.startswith("xxfake")]
    found = [t for t in words if t in known]
    if counts is None:
        return Coverage(len(words), len(found))
    return Coverage(len(words), len(found), sum(counts[t] for t in words), sum(counts[t] for t in found))


def task_vocab(texts: list[str], lm_config: dict, max_vocab: int = 60_000,
               min_freq: int = 2) -> tuple[list[str], Counter]:
    """A task vocabulary (fastai's `make_vocab`) from task texts, tokenized as the language model's corpus was,
    and the token counts behind it."""
    tok = lm_config["tokenizer"]
    words = WordTokenizer(get_lang(lm_config["lang"]), tok["rules"])
    counts = Counter(t for tokens in words(list(texts)) for t in tokens)
    return build_word_vocab(counts, max_vocab, min_freq), counts


def remap_embeddings(state_dict: dict[str, torch.Tensor], old_itos: list[str], new_itos: list[str],
                     counts: Counter | None = None) -> tuple[dict[str, torch.Tensor], Coverage]:
    """A language model state dict for `new_itos` (fastai's `match_embeds`), and the vocabulary coverage.

    `state_dict` is left as it was. Both vocabularies must keep fastai's special tokens at their fixed ids (the
    padding id is part of the architecture).
    """
    from fastai.text.learner import match_embeds

    if ENCODER not in state_dict:
        raise UlmfitError(f"this is not an AWD-LSTM language model state dict (no {ENCODER}); "
                          "remap needs fastai's language-model key names.")
    rows = state_dict[ENCODER].shape[0]
    if rows != len(old_itos):
        raise UlmfitError(f"the pretrained vocabulary has {len(old_itos):,} tokens but the embedding has {rows:,} "
                          "rows; the vocabulary does not belong to these weights.")
    for name, itos in (("pretrained", old_itos), ("task", new_itos)):
        if list(itos[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise UlmfitError(f"the {name} vocabulary does not start with fastai's special tokens "
                              f"({' '.join(SPECIAL_TOKENS)}); build it with fastai's make_vocab.")
    remapped = match_embeds(dict(state_dict), list(old_itos), list(new_itos))
    return remapped, coverage(old_itos, new_itos, counts)


def remap_language_model(lm: ModelDir | Path | str, direction: str, new_itos: list[str],
                         counts: Counter | None = None) -> tuple[torch.nn.Module, Coverage]:
    """One direction of a word-level model directory, moved into `new_itos`, in eval mode."""
    lm = lm if isinstance(lm, ModelDir) else ModelDir.open(lm, FORMAT)
    old_itos = _word_vocab(lm)
    state, cov = remap_embeddings(lm.load_language_model(direction).state_dict(), old_itos, new_itos, counts)
    new_model = build_language_model(lm.config | {"vocab_size": len(new_itos)})
    new_model.load_state_dict(state)
    return new_model.eval(), cov


def remap_model_dir(lm_dir: Path | str, new_itos: list[str], out: Path | str,
                    counts: Counter | None = None) -> Coverage:
    """Write a model directory like `lm_dir` whose every direction speaks `new_itos` (`ulmfit remap`)."""
    lm, out = ModelDir.open(lm_dir, FORMAT), Path(out)
    _word_vocab(lm)  # a SentencePiece model stops here, before anything is written
    if out.exists() and any(out.iterdir()):
        raise UlmfitError(f"{out} is not empty; choose a new folder for the remapped model.")
    tmp = ModelDir(out.with_name(out.name + ".tmp"), {})
    shutil.rmtree(tmp.path, ignore_errors=True)
    cov = None
    for d in lm.directions or DIRECTIONS:
        model, cov = remap_language_model(lm, d, new_itos, counts)
        tmp.save_weights(d, model)
    tokenizer = lm.config["tokenizer"] | tmp.write_tokenizer("word", new_itos)
    tmp.finish(lm.config | {"vocab_size": len(new_itos), "tokenizer": tokenizer,
                            "remapped_from": {"model": str(lm_dir), "coverage": cov.__dict__}})
    if out.exists():
        out.rmdir()
    tmp.path.rename(out)
    log.info("remapped %s into %s: %s", lm_dir, out, cov)
    return cov


def _word_vocab(lm: ModelDir) -> list[str]:
    if lm.config["tokenizer"]["type"] != "word":
        raise UlmfitError(f"{lm.path} is a {lm.config['tokenizer']['type']} model: it needs no remap, since task "
                          "text is encoded with the model's own vocabulary; use the model as it is.")
    return lm.tokenizer.itos
