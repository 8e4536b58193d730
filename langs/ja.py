"""Japanese: SentencePiece only (no word segmenter that installs without a dictionary package)."""
import unicodedata

from ulmfit.langs.base import Language


def normalize(text: str) -> str:
    """NFKC: half-width katakana to full width, full-width Latin letters and digits to ASCII."""
    return unicodedata.normalize("NFKC", text)


LANG = Language(
    code="ja",
    name="Japanese",
    word_tokenizer=None,
    has_case=False,
    sp_coverage=0.9995,
    word_joiner="",
    disambiguation=("aimai", "曖昧さ回避", "人名の曖昧さ回避", "地名の曖昧さ回避"),
    normalize=normalize,
)
