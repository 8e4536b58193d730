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

__all__ = ["ADAPTERS", "Language", "get_lang", "list_langs", "suggest_codes"]


def get_lang(code: str) -> Language:
    """The adapter for a Wikipedia language code: its own module where there is one, else the generic one.

    A code that is not a Wikipedia's gets one sentence with real codes to try (`suggest_codes`)."""
    code = code.strip().lower()
    if code in ADAPTERS:
        return importlib.import_module(f"ulmfit.langs.{code}").LANG
    if code in WIKIPEDIAS:
        return _generic(code)
    close = suggest_codes(code)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    listing = "`ulmfit langs --all` lists them" if close else \
        f"the languages with an adapter of their own are {', '.join(ADAPTERS)}, and `ulmfit langs --all` lists " \
        f"all {len(WIKIPEDIAS)}"
    if not _CODE.match(code):
        raise UlmfitError(f"'{code}' is not a language code{hint}: give a Wikipedia language code such as 'vi' or "
                          f"'zh-yue' ({listing}).")
    raise UlmfitError(f"there is no Wikipedia with the code '{code}'{hint}; {listing}.")


def suggest_codes(text: str, n: int = 3) -> list[str]:
    """Up to `n` real codes, as "vi (Vietnamese)", for what a user typed: languages whose English name (or a word
    of it) starts with it ("thai", "viet"), then codes that look alike, those the text starts with first ("deu")."""
    typed = re.sub(r"[^a-z-]", "", text.lower())
    if not typed:
        return []
    close = sorted(difflib.get_close_matches(typed, list(WIKIPEDIAS), n=n), key=lambda c: not typed.startswith(c))
    if len(typed) >= 3:
        words = {c: re.findall(r"[a-z]+", name.lower()) for c, name in WIKIPEDIAS.items()}
        named = sorted((c for c, ws in words.items() if any(w.startswith(typed) for w in ws)),
                       key=lambda c: (words[c][0] != typed, c not in ADAPTERS, c))
        close = list(dict.fromkeys(named[:n] + close))
    return [f"{c} ({WIKIPEDIAS[c]})" for c in close[:n]]


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
