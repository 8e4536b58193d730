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
