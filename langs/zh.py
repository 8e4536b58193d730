"""Chinese: no spaces between words, segmented by jieba."""
from ulmfit.langs.base import Language

# Full-width ASCII forms (U+FF01-U+FF5E) sit 0xFEE0 above their ASCII twins; U+3000 is the ideographic space.
_HALF_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: ord(" ")}


def normalize(text: str) -> str:
    """Turn full-width Latin letters, digits and punctuation into ASCII, so "ＡＢＣ１２" and "ABC12" are one word."""
    return text.translate(_HALF_WIDTH)


LANG = Language(
    code="zh",
    name="Chinese",
    word_tokenizer="jieba",
    has_case=False,
    sp_coverage=0.9995,
    word_joiner="",
    disambiguation=("disambig", "消歧义", "消歧義"),
    normalize=normalize,
)
