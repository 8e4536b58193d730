"""Thai word segmentation (newmm) against hand-segmented social-media text from the Wisesight Sentiment corpus.

The gold files hold one sample a line, words separated by "|" (`.label`), and the same text unsegmented (`.txt`).
Scores are word-boundary precision, recall and F1: a boundary is a character offset inside a line where one word
ends and the next begins; counts are summed over the whole file.
"""
from __future__ import annotations

import lzma
from pathlib import Path

import pytest

from ulmfit.langs import get_lang
from ulmfit.langs.tokenizers import make_word_tokenizer

GOLD = "th/wisesight_sentiment/word-tokenization/wisesight-{n}-samples-tokenised.{kind}.xz"


def boundaries(words: list[str]) -> set[int]:
    """Offsets where a word ends, except the end of the line (always a boundary, so it would only pad the score)."""
    ends, offset = set(), 0
    for word in words:
        offset += len(word)
        ends.add(offset)
    return ends - {offset}


def read_lines(path: Path) -> list[str]:
    with lzma.open(path, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


def test_boundaries():
    assert boundaries(["ab", "", "c", "de"]) == {2, 3}
    assert boundaries(["abc"]) == set()


@pytest.mark.parametrize("n, min_f1", [(160, 0.88), (1000, 0.89)])
def test_newmm_against_gold(shared_data, measured, n, min_f1):
    label, text = (shared_data / GOLD.format(n=n, kind=kind) for kind in ("label", "txt"))
    if not (label.exists() and text.exists()):
        pytest.skip(f"../shared/data is absent: {label.name} or {text.name} is missing")
    gold, lines = read_lines(label), read_lines(text)
    assert len(gold) == len(lines)

    found = correct = expected = 0
    for gold_words, predicted in zip(gold, make_word_tokenizer(get_lang("th"))(lines)):
        gold_words = gold_words.split("|")
        assert "".join(predicted) == "".join(gold_words)  # segmentation only, never a change of text
        pred_b, gold_b = boundaries(predicted), boundaries(gold_words)
        found, expected, correct = found + len(pred_b), expected + len(gold_b), correct + len(pred_b & gold_b)

    precision, recall = correct / found, correct / expected
    f1 = 2 * precision * recall / (precision + recall)
    measured(f"th newmm boundary F1, wisesight-{n}", f1, f"precision {precision:.4f}, recall {recall:.4f}")
    assert f1 >= min_f1
