"""Text ↔ ids with a corpus's or model's tokenizer: decoding undoes fastai's case and repetition markers."""
from __future__ import annotations

import pytest

from ulmfit.langs import get_lang
from ulmfit.langs.rules import default_rules
from ulmfit.pretrain.tokenizer import SPECIAL_TOKENS, TextTokenizer, load_word_vocab, write_word_vocab

WORDS = ["hello", "!", "and", "yes", "more", "wow", ".", "3"]


@pytest.fixture
def english(tmp_path) -> TextTokenizer:
    write_word_vocab(tmp_path / "vocab.json", SPECIAL_TOKENS + WORDS)
    en = get_lang("en")
    return TextTokenizer("word", en, default_rules(en, "word"), tmp_path / "vocab.json")


@pytest.mark.parametrize("text, markers", [
    ("Wow!!! and more.", ["xxrep"]),            # a repeated character, then punctuation spacing
    ("Hello and yes yes yes more", ["xxwrep"]),  # a repeated word; what follows is not repeated
    ("Yes Yes Yes and more", ["xxwrep", "xxmaj"]),  # a repeated capitalised word: both markers
    ("HELLO and more", ["xxup"]),
])
def test_word_decode_undoes_the_rules(english, text, markers):
    ids = english.encode(text)
    assert set(markers) <= {english.itos[i] for i in ids}
    assert english.decode(ids) == text


def test_word_vocab_round_trip(tmp_path):
    write_word_vocab(tmp_path / "vocab.json", SPECIAL_TOKENS + ["ü", "中"])
    assert load_word_vocab(tmp_path / "vocab.json") == SPECIAL_TOKENS + ["ü", "中"]


def test_word_vocab_is_fastais(shared_data):
    """`build_word_vocab` is fastai's `make_vocab` without importing fastai: same order, cut and padding."""
    import lzma
    from collections import Counter

    from fastai.text.data import make_vocab

    from ulmfit.pretrain.tokenizer import build_word_vocab

    with lzma.open(shared_data / "en/wikitext-2/valid.txt.xz", "rt", encoding="utf-8") as f:
        counts = Counter(f.read().split())
    counts.update({"xxmaj": 5000, "xxunk": 2})  # special tokens in the counts go first all the same
    for max_vocab, min_freq in [(60_000, 3), (1000, 2), (64, 1), (72 - len(SPECIAL_TOKENS), 3), (5, 1)]:
        assert build_word_vocab(counts, max_vocab, min_freq) == make_vocab(counts, min_freq, max_vocab, SPECIAL_TOKENS)
    assert len(build_word_vocab(counts, 64, 1)) == 72  # a multiple of 8 still gets eight xxfake, as in fastai
