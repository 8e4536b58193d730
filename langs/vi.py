"""Vietnamese: words are written as space-separated syllables, so the word level is syllables.

spaCy's default Vietnamese tokenizer needs pyvi, and without it (`use_pyvi: False`) it only splits on spaces,
leaving punctuation glued to syllables ("Nội." stays one token). The rule-based tokenizer splits punctuation off.
Vietnamese text mixes precomposed letters and letters with combining diacritics (input methods differ), so one
syllable can have two spellings; NFC leaves one.
"""
import unicodedata

from ulmfit.langs.base import Language


def normalize(text: str) -> str:
    """Compose combining diacritics (NFC), so each syllable has one code-point spelling."""
    return unicodedata.normalize("NFC", text)


LANG = Language(
    code="vi",
    name="Vietnamese",
    disambiguation=("trang định hướng",),
    normalize=normalize,
    spacy_config={"nlp": {"tokenizer": {"@tokenizers": "spacy.Tokenizer.v1"}}},
)
