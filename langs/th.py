"""Thai: no spaces between words (spaces end phrases and sentences), segmented by PyThaiNLP's newmm."""
from pythainlp.util import normalize as thai_normalize

from ulmfit.langs.base import Language

# Zero-width space, non-joiner, joiner and BOM: invisible in Thai text, but they split or glue words.
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\ufeff"))


def normalize(text: str) -> str:
    """Drop zero-width characters, then let PyThaiNLP put marks in their standard order and remove doubled
    vowels and tone marks (typing slips that make one word look like many)."""
    return thai_normalize(text.translate(_ZERO_WIDTH))


LANG = Language(
    code="th",
    name="Thai",
    word_tokenizer="pythainlp",
    has_case=False,
    word_joiner="",
    disambiguation=("แก้ความกำกวม",),
    normalize=normalize,
)
