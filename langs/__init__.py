"""Language adapters: one small module per language (`ulmfit.langs.th`), and a generic SentencePiece adapter
for every other Wikipedia language code."""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import re
from pathlib import Path

from ulmfit.errors import UlmfitError
from ulmfit.langs.base import Language
from ulmfit.langs.wikipedias import WIKIPEDIAS

ADAPTERS = (
    "ar", "bg", "bn", "de", "en", "es", "fr", "hi", "it", "ja",
    "ko", "mr", "nl", "pl", "ru", "th", "uk", "vi", "zh",
)
# ISO-like codes with subtags ("zh-min-nan", "zh-classical"), plus "simple", the one Wikipedia code that is not.
_CODE = re.compile(r"^(?:[a-z]{2,3}|simple)(?:-[a-z0-9]{2,9})*$")

__all__ = ["ADAPTERS", "Language", "get_lang", "list_langs"]


def get_lang(code: str) -> Language:
    """The adapter for a Wikipedia language code: its own module where there is one, else the generic one."""
    code = code.strip().lower()
    if code in ADAPTERS:
        return importlib.import_module(f"ulmfit.langs.{code}").LANG
    if not _CODE.match(code):
        raise UlmfitError(
            f"'{code}' is not a language code: give a Wikipedia language code such as 'vi' or 'zh-yue' "
            "(`ulmfit langs --all` lists them)."
        )
    if code not in WIKIPEDIAS:
        close = difflib.get_close_matches(code, list(WIKIPEDIAS), n=3)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise UlmfitError(f"there is no Wikipedia with the code '{code}'{hint}; `ulmfit langs --all` lists them.")
    return _generic(code)


def list_langs(include_generic: bool = False) -> list[Language]:
    """The languages with adapters of their own, then (with `include_generic`) every other Wikipedia."""
    langs = [get_lang(code) for code in ADAPTERS]
    if include_generic:
        langs += [_generic(code) for code in sorted(WIKIPEDIAS) if code not in ADAPTERS]
    return langs


def _spacy_has_lang(code: str) -> bool:
    """Whether spaCy ships rules for `code` (a `spacy/lang/CODE` package), found without importing spaCy, which
    takes seconds (it imports torch through thinc)."""
    spec = importlib.util.find_spec("spacy")
    return spec is not None and any((Path(folder) / "lang" / code / "__init__.py").is_file()
                                    for folder in spec.submodule_search_locations or ())


def _generic(code: str) -> Language:
    """SentencePiece works for any script; the word level uses spaCy's rules where spaCy knows the language."""
    spacy_knows = _spacy_has_lang(code.replace("-", "_"))
    return Language(
        code=code,
        name=WIKIPEDIAS[code],
        word_tokenizer="spacy" if spacy_knows else None,
        sp_coverage=0.9995,
        generic=True,
    )
