"""Text rules applied before tokenization, by name, so a corpus or model can record and replay them.

fastai's rules are used as they are, except the two case rules: fastai's `replace_maj`/`replace_all_caps` match
`[A-Z]` only, so "Москва" or "Übel" would be lower-cased without an `xxmaj` marker and the case would be lost.
The versions here mark upper case in any cased script.
"""
from __future__ import annotations

import re
import sys
from typing import Callable

import fastai.text.core as fastai_text
from fastai.text.core import (
    TK_MAJ,
    TK_UP,
    fix_html,
    replace_rep,
    replace_wrep,
    rm_useless_spaces,
    spec_add_spaces,
)

from ulmfit.errors import UlmfitError
from ulmfit.langs.base import Language

_UPPER = "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isupper() and c.lower() != c)
_LOWER = "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.islower())
_U, _L = re.escape(_UPPER), re.escape(_LOWER)
# Same shapes as fastai's patterns, with the ASCII classes widened to every cased letter.
_re_all_caps = re.compile(rf"(\s|^)([{_U}]+[^{_L}\s]*)(?=(\s|$))")
_re_maj = re.compile(rf"(\s|^)([{_U}][^{_U}\s]*)(?=(\s|$))")


def replace_all_caps(text: str) -> str:
    """Lower-case words written in capitals and put `xxup` before those longer than one letter."""

    def _sub(m: re.Match) -> str:
        marker = f"{TK_UP} " if len(m.group(2)) > 1 else ""
        return f"{m.group(1)}{marker}{m.group(2).lower()}"

    return _re_all_caps.sub(_sub, text)


def replace_maj(text: str) -> str:
    """Lower-case capitalised words and put `xxmaj` before those longer than one letter."""

    def _sub(m: re.Match) -> str:
        marker = f"{TK_MAJ} " if len(m.group(2)) > 1 else ""
        return f"{m.group(1)}{marker}{m.group(2).lower()}"

    return _re_maj.sub(_sub, text)


def lowercase(text: str) -> str:
    """Lower-case what the case rules left (fastai's `lowercase` also adds `xxbos`; the pipeline adds that id)."""
    return text.lower().strip()


RULES: dict[str, Callable[[str], str]] = {
    "fix_html": fix_html,
    "replace_rep": replace_rep,
    "replace_wrep": replace_wrep,
    "spec_add_spaces": spec_add_spaces,
    "rm_useless_spaces": rm_useless_spaces,
    "replace_all_caps": replace_all_caps,
    "replace_maj": replace_maj,
    "lowercase": lowercase,
    # fastai's own ASCII-only case rules, for replaying models trained with them (`ulmfit convert`).
    "fastai_replace_all_caps": fastai_text.replace_all_caps,
    "fastai_replace_maj": fastai_text.replace_maj,
}
CASE_RULES = ("replace_all_caps", "replace_maj", "lowercase")


def default_rules(lang: Language, tokenizer: str) -> list[str]:
    """The rule names a new corpus uses: fastai's defaults for words (case rules only for cased scripts);
    for SentencePiece, which keeps case and spacing itself, only the clean-up rules."""
    if tokenizer == "sentencepiece":
        return ["fix_html", "replace_rep", "replace_wrep", "rm_useless_spaces"]
    names = ["fix_html", "replace_rep", "replace_wrep", "spec_add_spaces", "rm_useless_spaces"]
    return names + list(CASE_RULES) if lang.has_case else names


def make_preprocessor(lang: Language, rule_names: list[str]) -> Callable[[str], str]:
    """One function applying the language's normalisation, then the named rules in order."""
    unknown = [n for n in rule_names if n not in RULES]
    if unknown:
        raise UlmfitError(f"unknown text rule(s) {unknown}; known rules are {sorted(RULES)}.")
    steps = ([lang.normalize] if lang.normalize else []) + [RULES[n] for n in rule_names]

    def preprocess(text: str) -> str:
        for step in steps:
            text = step(text)
        return text

    return preprocess
