"""The older ULMFiT checkpoint formats that `ulmfit convert` imports, and what each implies beyond its tensors.

The three formats, and where the facts about them come from:

- `fastai-wt103`: fastai's English WikiText-103 models, fastai's `URLs.WT103_FWD`/`URLs.WT103_BWD`
  (https://s3.amazonaws.com/fast-ai-modelzoo/wt103-fwd.tgz and wt103-bwd.tgz, fastai/data/external.py). Each
  archive holds one folder with the weights (`lstm_fwd.pth`/`lstm_bwd.pth`) and the pickled word list
  (`itos_wt103.pkl`); fastai's `language_model_learner` takes the folder's first `*.pth` and `*.pkl`. fastai v1
  wrote them: its AWD-LSTM state dict also holds the dropped-out copy `0.rnns.N.module.weight_hh_l0` beside
  `0.rnns.N.weight_hh_l0_raw` (fastai's `clean_raw_keys` drops it), and v1 ordered its special tokens
  `xxunk xxpad xxbos xxeos xxfld xxmaj xxup xxrep xxwrep` (fastai v1 text/transform.py). fastai v1's case rules
  were token rules on `str.isupper`, which this package's Unicode `replace_all_caps`/`replace_maj` match.
- `fastai-ulmfit`: the fastai v2 releases of github.com/floleuerer/fastai_ulmfit (README; fastai_ulmfit/pretrained.py;
  2_ulmfit_lm_pretrain.ipynb). A `.tgz` with `fwd/` and `bwd/` (each a `*model.pth` state dict from
  `Learner.save(with_opt=False)`, the pickled `dls.vocab` list `*vocab.pkl`, and `model.json` naming the
  tokenizer and its language) and `spm/spm.model` from fastai's `SentencePieceTokenizer`: fastai's special tokens
  as `▁xxunk`…`▁xxmaj` at ids 0-8 and `<unk>` at 9, trained on text through fastai's default rules (ASCII case
  rules, lower-casing). The vocabulary pickle orders the pieces by frequency (fastai's `make_vocab`), so the
  model's ids are not the SentencePiece ids. AWD-LSTM 400/1152/3, `drop_mult` 0.5.
- `thai2fit`: Charin Polpanumas's Thai Wikipedia model as PyThaiNLP distributes it (pythainlp-corpus
  `wiki_lm_lstm`/`wiki_itos_lstm` 0.32: `thwiki_model_lstm.pth`, `thwiki_itos.pkl`, also as `thwiki_itos.json`).
  fastai v1, 60,005 words, 400/1550/4 with its own dropouts (pythainlp/generate/thai2fit.py), saved together
  with its optimizer state.
- `fastai`: any other fastai (v1 or v2) word-level AWD-LSTM language model, as `learn.save()` writes it
  (`models/NAME.pth`, with or without the optimizer state) with its vocabulary pickled beside it (`dls.vocab`, or
  `data.vocab.itos` in v1), or what `ulmfit export-fastai` wrote. The language is not recorded in these files, so
  it is given with `--lang`; the text rules are fastai's defaults (`defaults.text_proc_rules`, its ASCII case rules)
  and the tokenizer the language's word tokenizer (spaCy's rules where fastai used spaCy).

Special tokens: fastai before v1 spelled them `_unk_`, `_pad_`, `xbos`, `xfld`, `t_up`, `tk_rep`, `tk_wrep`; other
releases wrote `<unk>`-style names. `SPECIAL_SPELLINGS` maps them to fastai's `xxunk`…`xxmaj` (the converter does
so only where the vocabulary lacks fastai's own spelling), so their embedding rows go where fastai 2.8 looks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ulmfit.langs import get_lang
from ulmfit.langs.rules import default_rules

_FASTAI_DROPOUTS = {"output_p": 0.1, "hidden_p": 0.15, "input_p": 0.25, "embed_p": 0.02, "weight_p": 0.2}


@dataclass(frozen=True)
class LegacyFormat:
    """What a legacy format implies beyond its tensors: tokenizer, language, dropouts, rules, provenance."""

    name: str
    title: str
    tokenizer: str
    lang: str | None
    dropouts: dict[str, float]
    drop_mult: float
    homepage: str
    license: str
    rules: tuple[str, ...] | None  # by this package's rule names; None: its default word rules for the language
    corpus: dict[str, Any] | None  # None: the language's Wikipedia

    def text_rules(self, lang: str) -> list[str]:
        """The text rules the model was trained with (`ulmfit.langs.rules` names)."""
        return list(self.rules) if self.rules is not None else default_rules(get_lang(lang), "word")

    def corpus_for(self, lang: str) -> dict[str, Any]:
        return self.corpus if self.corpus is not None else {"source": {"type": "wikipedia-dump", "dbname": f"{lang}wiki"}}


# Older spellings of fastai's special tokens, by the token fastai 2.8 uses (fastai 0.7's imdb scripts and text.py;
# `<unk>`-style and backquoted names of other ULMFiT releases).
SPECIAL_SPELLINGS = {
    "xxunk": ("_unk_", "`unk", "<unk>", "<UNK>"),
    "xxpad": ("_pad_", "`pad", "<pad>", "<PAD>"),
    "xxbos": ("xbos", "_bos_", "`bos", "<bos>"),
    "xxeos": ("xeos", "_eos_", "`eos", "<eos>"),
    "xxfld": ("xfld", "_fld_", "`fld"),
    "xxrep": ("tk_rep", "`rep", "_rep_"),
    "xxwrep": ("tk_wrep", "`wrep", "_wrep_"),
    "xxup": ("t_up", "`up", "_up_"),
    "xxmaj": ("t_maj", "`maj", "_maj_"),
}

FORMATS = {
    "fastai-wt103": LegacyFormat(
        "fastai-wt103", "fastai's WikiText-103 AWD-LSTM (fastai v1 model zoo)", "word", "en", _FASTAI_DROPOUTS, 1.0,
        "https://docs.fast.ai/text.models.awdlstm.html", "unknown", None, {"source": {"type": "wikitext-103"}}),
    "fastai-ulmfit": LegacyFormat(
        "fastai-ulmfit", "a fastai_ulmfit release (SentencePiece, fastai v2)", "sentencepiece", None,
        _FASTAI_DROPOUTS, 0.5, "https://github.com/floleuerer/fastai_ulmfit", "mit",
        # fastai v2's `defaults.text_proc_rules`, with fastai's own ASCII-only case rules.
        ("fix_html", "replace_rep", "replace_wrep", "spec_add_spaces", "rm_useless_spaces", "fastai_replace_all_caps",
         "fastai_replace_maj", "lowercase"), None),
    "thai2fit": LegacyFormat(
        "thai2fit", "thai2fit (PyThaiNLP's Thai Wikipedia AWD-LSTM)", "word", "th",
        {"output_p": 0.25, "hidden_p": 0.1, "input_p": 0.2, "embed_p": 0.02, "weight_p": 0.15}, 0.9,
        "https://github.com/cstorm125/thai2fit", "mit",
        # pythainlp's `pre_rules_th`/`post_rules_th` where this package has them: fastai's fix_html and space rules
        # and lower-casing (the Thai adapter's normalisation reorders vowels as `reorder_vowels` did). Its URL,
        # bracket and character-repetition rules and its own newmm dictionary are not replayed.
        ("fix_html", "spec_add_spaces", "rm_useless_spaces", "lowercase"),
        {"source": {"type": "wikipedia-dump", "dbname": "thwiki", "dump_date": "2019-02-17"}}),
    "fastai": LegacyFormat(
        "fastai", "a fastai AWD-LSTM language model (learn.save)", "word", None, _FASTAI_DROPOUTS, 1.0,
        "https://docs.fast.ai/text.learner.html", "unknown",
        ("fix_html", "replace_rep", "replace_wrep", "spec_add_spaces", "rm_useless_spaces", "fastai_replace_all_caps",
         "fastai_replace_maj", "lowercase"), {"source": {"type": "unknown"}}),
}
