"""Word tokenizers: callables from a batch of texts to one list of tokens per text (fastai's tokenizer protocol).

Each one pickles cheaply (as its name or its arguments) and builds what it needs once per process, so the
pipeline can send it to worker processes.
"""
from __future__ import annotations

import itertools
import logging
from typing import Iterable, Iterator

from ulmfit.errors import UlmfitError
from ulmfit.langs.base import Language, WordTokenizer
from ulmfit.langs.rules import SPECIAL_TOKENS, WHITESPACE_RUN


class SpacyWordTokenizer:
    """`spacy.blank(code, config=config)` with fastai's special tokens as tokenizer exceptions, so "xxmaj" or
    "xxbos" are never split.

    fastai's `SpacyTokenizer` calls `spacy.blank(lang)` without a config, which fails for Korean (mecab) and
    cannot pick Vietnamese's rule-based tokenizer; this is the same few lines with a config.

    The tokens are spaCy's, but most chunks between whitespace are looked up rather than tokenized again. spaCy
    caches chunks too, yet stops caching for the rest of a text once a chunk hits a special case (a newline is
    one), so on Wikipedia articles it re-splits nearly every word: 4 of 5 chunks repeat one seen before. A chunk is
    tokenized on its own exactly as inside its text, except where spaCy matches a special case across chunks
    (Spanish "EE. UU." is one token; the quotes of "a' ''b" are split three ways in a text, two alone): where one
    chunk ends and the next begins with two tokens that stand side by side in a special case, spaCy splits the
    chunks together. `tests/langs/test_tokenizers.py` checks the tokens against spaCy's on real wikitext.
    """

    MEMO_SIZE = 200_000  # chunks remembered (about 50 MB); the memo starts afresh when full

    def __init__(self, code: str, config: dict | None = None):
        import spacy
        from spacy.symbols import ORTH

        self.code, self.config = code, config or {}
        self.nlp = spacy.blank(code, config=self.config)
        self.nlp.max_length = 10 ** 9  # spaCy caps texts at 1M characters for its parser and NER; tokenizing needs none
        for tok in SPECIAL_TOKENS:
            self.nlp.tokenizer.add_special_case(tok, [{ORTH: tok}])
        # The lexical attributes spaCy computes for each new word (shape, like_num, …) are not needed to split text,
        # and cost a third of the tokenizing.
        self.nlp.vocab.lex_attr_getters = {}
        # chunk (or chunks split together) -> (its tokens, the left and right sides of `_joins` it ends and begins with)
        self._memo: dict[str, tuple[list[str], frozenset[str], frozenset[str]]] = {}
        # Korean's and Vietnamese's configs pick spaCy's rule tokenizer too; a custom one is used as it is.
        self._by_chunk = type(self.nlp.tokenizer) is spacy.tokenizer.Tokenizer
        self._joins = self._special_case_neighbours() if self._by_chunk else set()
        self._lefts, self._rights = {a for a, _ in self._joins}, {b for _, b in self._joins}
        self._lengths = sorted({len(t) for pair in self._joins for t in pair})
        self._last_chars, self._first_chars = {a[-1] for a in self._lefts}, {b[0] for b in self._rights}

    def __reduce__(self):
        # Send the arguments, not the pipeline: the receiving process builds its own.
        return type(self), (self.code, self.config)

    def __call__(self, texts: Iterable[str]) -> Iterator[list[str]]:
        if not self._by_chunk:
            yield from map(self._spacy, map(str, texts))
            return
        chunked = [self._chunks(str(t)) for t in texts]
        self._learn({c: None for chunks in chunked for c in chunks})
        for chunks in chunked:
            yield self._tokens(chunks)

    def _tokens(self, chunks: list[str]) -> list[str]:
        """The text's tokens from the memo; where special cases might be matched across chunks, from spaCy's
        tokens of those chunks together (a word chunk is followed by exactly one space where the next is a word)."""
        known = [self._memo[c] for c in chunks]
        joins = self._joins
        linked = [i for i, (a, b) in enumerate(itertools.pairwise(known))
                  if a[1] and b[2] and not joins.isdisjoint(itertools.product(a[1], b[2]))]
        tokens, start = [], 0
        for first, last in _runs(linked):
            for words, _, _ in known[start:first]:
                tokens += words
            tokens += self._together(" ".join(chunks[first:last + 2]))
            start = last + 2
        for words, _, _ in known[start:]:
            tokens += words
        return tokens

    def _together(self, text: str) -> list[str]:
        if text not in self._memo:
            self._memo[text] = (self._spacy(text), _NONE, _NONE)
        return self._memo[text][0]

    @staticmethod
    def _chunks(text: str) -> list[str]:
        """What spaCy tokenizes of `text`, in order: the words between whitespace and the whitespace runs, where a
        run after a word loses one leading space (that word's trailing space) and a run opening the text stays
        whole."""
        parts = WHITESPACE_RUN.split(text)  # words at even places, whitespace runs at odd ones
        for i in range(1 if parts[0] else 3, len(parts), 2):
            if parts[i][0] == " ":
                parts[i] = parts[i][1:]
        return [p for p in parts if p]

    def _learn(self, needed: dict[str, None]) -> None:
        """Put the `needed` chunks in the memo: those not there yet are tokenized, the words in one spaCy call per
        10,000, joined by newlines, which split them as whitespace does and which no word's tokens contain."""
        new = [c for c in needed if c not in self._memo]
        if len(self._memo) + len(new) > self.MEMO_SIZE:
            self._memo.clear()
            new = list(needed)
        words = [c for c in new if not c[0].isspace()]
        for c in new:
            if c[0].isspace():
                self._remember(c, self._spacy(c))
        for start in range(0, len(words), 10_000):
            group = words[start:start + 10_000]
            with self.nlp.memory_zone():  # the lexemes spaCy makes for them are not kept: the memo keeps the text
                tokens = self._spacy("\n".join(group))
            ends = [i for i, t in enumerate(tokens) if t == "\n"] + [len(tokens)]
            for word, begin, end in zip(group, [-1] + ends, ends):
                self._remember(word, tokens[begin + 1:end])

    def _spacy(self, text: str) -> list[str]:
        return [tok.text for tok in self.nlp.tokenizer(text)]

    def _remember(self, chunk: str, tokens: list[str]) -> None:
        ends = begins = _NONE
        if chunk[-1] in self._last_chars:
            ends = frozenset(self._lefts.intersection([chunk[-n:] for n in self._lengths]))
        if chunk[0] in self._first_chars:
            begins = frozenset(self._rights.intersection([chunk[:n] for n in self._lengths]))
        self._memo[chunk] = (tokens, ends, begins)

    def _special_case_neighbours(self) -> set[tuple[str, str]]:
        """Every pair of tokens that stand side by side in a special case, split with the special cases or without
        them (spaCy's matcher of special cases looks for the latter); where one chunk ends with the first and the
        next begins with the second, a special case may be matched across them."""
        from spacy.tokenizer import Tokenizer

        tokenizer = self.nlp.tokenizer
        plain = Tokenizer(self.nlp.vocab, rules={}, prefix_search=tokenizer.prefix_search,
                          suffix_search=tokenizer.suffix_search, infix_finditer=tokenizer.infix_finditer,
                          token_match=tokenizer.token_match, url_match=tokenizer.url_match)
        return {(a, b) for case in tokenizer.rules for split in (plain, tokenizer)
                for a, b in itertools.pairwise(t.text for t in split(case)) if not _has_space(a + b)}


_NONE: frozenset[str] = frozenset()


def _has_space(text: str) -> bool:
    # Only special cases of whitespace alone hold whitespace tokens, and they are one token: pairs are of words.
    return any(c.isspace() for c in text)


def _runs(indices: list[int]) -> Iterator[tuple[int, int]]:
    """Runs of consecutive integers in a sorted list, as (first, last)."""
    for _, group in itertools.groupby(enumerate(indices), lambda pair: pair[1] - pair[0]):
        items = [i for _, i in group]
        yield items[0], items[-1]


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
