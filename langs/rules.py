"""Text rules applied before tokenization, by name, so a corpus or model can record and replay them, and fastai's
special tokens, which the rules insert.

The rules are fastai's text rules (`fastai.text.core`: `fix_html`, `replace_rep`, `replace_wrep`,
`spec_add_spaces`, `rm_useless_spaces`, `replace_all_caps`, `replace_maj`), with fastai's patterns and outputs,
written here rather than imported because importing fastai imports torch: about 400 MB in every process that
cleans or encodes text, which `ulmfit prepare` runs one of per core. `tests/langs/test_rules.py` checks that
each rule gives fastai's output on real text.

The two case rules differ from fastai's on purpose: fastai's match `[A-Z]` only, so "Москва" or "Übel" would be
lower-cased without an `xxmaj` marker and the case would be lost. The versions here mark upper case in any cased
script; fastai's ASCII-only versions stay available, under `fastai_` names, to replay models trained with them.
"""
from __future__ import annotations

import functools
import html
import re
from typing import Callable

from ulmfit.errors import UlmfitError
from ulmfit.langs.base import Language

# fastai's special tokens, in fastai's order: ids 0-8 of every vocabulary here.
UNK, PAD, BOS, EOS, FLD, TK_REP, TK_WREP, TK_UP, TK_MAJ = SPECIAL_TOKENS = [
    "xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj"]

_HTML_FIXES = (("#39;", "'"), ("amp;", "&"), ("#146;", "'"), ("nbsp;", " "), ("#36;", "$"), ("\\n", "\n"),
               ("quot;", "'"), ("<br />", "\n"), ('\\"', '"'), ("<unk>", UNK), (" @.@ ", "."), (" @-@ ", "-"),
               ("...", " …"))
_RE_REP = re.compile(r"(\S)(\1{2,})")
_RE_WREP = re.compile(r"(?:\s|^)(\w+)\s+((?:\1\s+)+)\1(\s|\W|$)")
_RE_SPEC = re.compile(r"([/#\\])")
_RE_SPACES = re.compile(" {2,}")
WHITESPACE_RUN = re.compile(r"(\s+)")  # a split keeps the runs: words at even places; `\s` is `str.isspace`

_RE_ASCII_ALL_CAPS = re.compile(r"(\s|^)([A-Z]+[^a-z\s]*)(?=(\s|$))")
_RE_ASCII_MAJ = re.compile(r"(\s|^)([A-Z][^A-Z\s]*)(?=(\s|$))")


def fix_html(text: str) -> str:
    """Undo the HTML and WikiText-103 leftovers fastai's rule knows (`&amp;` remnants, `@-@`, `<br />`, …)."""
    for old, new in _HTML_FIXES:
        text = text.replace(old, new)
    return html.unescape(text)


def replace_rep(text: str) -> str:
    """A character repeated 3 times or more becomes `xxrep N c`."""
    return _RE_REP.sub(lambda m: f" {TK_REP} {len(m[2]) + 1} {m[1]} ", text)


def replace_wrep(text: str) -> str:
    """A word repeated 3 times or more becomes `xxwrep N word`."""
    return _RE_WREP.sub(lambda m: f" {TK_WREP} {len(m[2].split()) + 2} {m[1]} {m[3]}", text)


def spec_add_spaces(text: str) -> str:
    """Spaces around `/`, `#` and `\\`."""
    return _RE_SPEC.sub(r" \1 ", text)


def rm_useless_spaces(text: str) -> str:
    """Runs of spaces become one."""
    return _RE_SPACES.sub(" ", text)


def _mark_case(pattern: re.Pattern, marker: str, text: str) -> str:
    return pattern.sub(lambda m: f"{m[1]}{marker + ' ' if len(m[2]) > 1 else ''}{m[2].lower()}", text)


def _is_upper(c: str) -> bool:
    return c.isupper() and c.lower() != c


# fastai's case patterns look at one whitespace-delimited word at a time, so the rules below map word by word: each
# distinct word once (a regex with every cased letter of Unicode in its classes costs 3x more, and 0.4 s to build).
@functools.lru_cache(maxsize=1 << 17)
def _all_caps_word(word: str) -> str:
    if word and _is_upper(word[0]) and not any(c.islower() for c in word):
        return f"{TK_UP} {word.lower()}" if len(word) > 1 else word.lower()
    return word


@functools.lru_cache(maxsize=1 << 17)
def _maj_word(word: str) -> str:
    if word and _is_upper(word[0]) and not any(map(_is_upper, word[1:])):
        return f"{TK_MAJ} {word.lower()}" if len(word) > 1 else word.lower()
    return word


def replace_all_caps(text: str) -> str:
    """Lower-case words written in capitals and put `xxup` before those longer than one letter."""
    return "".join(map(_all_caps_word, WHITESPACE_RUN.split(text)))


def replace_maj(text: str) -> str:
    """Lower-case capitalised words and put `xxmaj` before those longer than one letter."""
    return "".join(map(_maj_word, WHITESPACE_RUN.split(text)))


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
    "fastai_replace_all_caps": functools.partial(_mark_case, _RE_ASCII_ALL_CAPS, TK_UP),
    "fastai_replace_maj": functools.partial(_mark_case, _RE_ASCII_MAJ, TK_MAJ),
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
