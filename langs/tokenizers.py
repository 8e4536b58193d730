"""Word tokenizers: callables from a batch of texts to one list of tokens per text (fastai's tokenizer protocol).

Each one pickles cheaply (as its name or its arguments) and builds what it needs once per process, so the
pipeline can send it to worker processes.
"""
from __future__ import annotations

import logging
from typing import Iterable, Iterator

from ulmfit.errors import UlmfitError
from ulmfit.langs.base import Language, WordTokenizer
from ulmfit.langs.rules import SPECIAL_TOKENS


class SpacyWordTokenizer:
    """`spacy.blank(code, config=config)` with fastai's special tokens as tokenizer exceptions, so "xxmaj" or
    "xxbos" are never split.

    fastai's `SpacyTokenizer` calls `spacy.blank(lang)` without a config, which fails for Korean (mecab) and
    cannot pick Vietnamese's rule-based tokenizer; this is the same few lines with a config.
    """

    def __init__(self, code: str, config: dict | None = None, batch_size: int = 5000):
        import spacy
        from spacy.symbols import ORTH

        self.code, self.config, self.batch_size = code, config or {}, batch_size
        self.nlp = spacy.blank(code, config=self.config)
        self.nlp.max_length = 10 ** 9  # spaCy caps texts at 1M characters for its parser and NER; tokenizing needs none
        for tok in SPECIAL_TOKENS:
            self.nlp.tokenizer.add_special_case(tok, [{ORTH: tok}])

    def __reduce__(self):
        # Send the arguments, not the pipeline: the receiving process builds its own.
        return type(self), (self.code, self.config, self.batch_size)

    def __call__(self, texts: Iterable[str]) -> Iterator[list[str]]:
        # the tokenizer alone: a blank pipeline has nothing else to run, and `nlp.pipe` costs a third more
        for doc in self.nlp.tokenizer.pipe(map(str, texts), batch_size=self.batch_size):
            yield [tok.text for tok in doc]


def thai_newmm(texts: Iterable[str]) -> Iterator[list[str]]:
    """PyThaiNLP's newmm (dictionary maximal matching); spaces are kept as tokens, since in Thai they mark phrase
    and sentence ends."""
    from pythainlp.tokenize import word_tokenize

    for text in texts:
        yield word_tokenize(text, engine="newmm", keep_whitespace=True)


_jieba_ready = False


def chinese_jieba(texts: Iterable[str]) -> Iterator[list[str]]:
    """jieba's default (precise) mode; its dictionary is loaded once per process, without jieba's log chatter."""
    global _jieba_ready
    import jieba

    if not _jieba_ready:
        jieba.setLogLevel(logging.WARNING)
        jieba.initialize()
        _jieba_ready = True
    for text in texts:
        yield jieba.lcut(text)


def make_word_tokenizer(lang: Language) -> WordTokenizer:
    """The word tokenizer the language declares."""
    if lang.word_tokenizer == "spacy":
        return SpacyWordTokenizer(lang.code, lang.spacy_config)
    if lang.word_tokenizer == "pythainlp":
        return thai_newmm
    if lang.word_tokenizer == "jieba":
        return chinese_jieba
    if lang.word_tokenizer is None:
        raise UlmfitError(
            f"{lang.name} ({lang.code}) has no word tokenizer in this package: use `--tokenizer sentencepiece`."
        )
    raise UlmfitError(f"unknown word tokenizer '{lang.word_tokenizer}' for {lang.code}: use spacy, pythainlp or jieba.")
