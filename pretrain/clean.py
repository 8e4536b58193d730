"""Wikitext → plain text, with mwparserfromhell doing the parsing.

Templates, references, tables, comments, files, categories and interlanguage links go; link texts, headings and
paragraphs stay. A cleaned article is its title on the first line, then one paragraph or heading per line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import mwparserfromhell
from mwparserfromhell.nodes import ExternalLink, Heading, HTMLEntity, Tag, Text, Wikilink
from mwparserfromhell.wikicode import Wikicode

from ulmfit.langs.wikipedias import WIKIPEDIAS

# Tags whose content is not running text.
_DROP_TAGS = frozenset({
    "ref", "references", "table", "gallery", "math", "chem", "ce", "timeline", "score", "imagemap", "graph",
    "syntaxhighlight", "source", "pre", "templatedata", "templatestyles", "mapframe", "maplink", "inputbox",
    "categorytree", "hiero", "section", "indicator", "noinclude", "includeonly", "onlyinclude",
})
_BREAK_TAGS = frozenset({"br", "hr", "p", "div", "li", "dd", "dt", "tr", "blockquote", "poem"})
_GENERIC_DISAMBIGUATION = frozenset({"disambiguation", "disambig", "dab", "disamb", "hndis", "geodis"})
_FILE_NS = ("file", "image", "media")
_CATEGORY_NS = ("category",)
_HEADING = "\x00"
_STYLE = re.compile(r"'{2,}")
_SPACES = re.compile(r"[^\S\n]+")
_SPACE_BEFORE_STOP = re.compile(r" +(?=[,.](?:\s|$))")  # left where a reference or template was removed
_JUNK_LINE = re.compile(r"^[\W_]*$")  # a line of punctuation alone, left over from markup
_EMPTY_BRACKETS = re.compile(r"\s?[(（]\s*[,;，；、]?\s*[)）]")  # what a removed {{lang|…}} leaves
# MediaWiki's language-conversion markup (zh, sr, kk, …): -{text}- or -{zh-hans:简; zh-hant:繁;}-
_CONVERSION = re.compile(r"-\{(?:[^{}|]*\|)?([^{}]*?)\}-")
_VARIANT = re.compile(r"^\s*[a-z]{2,3}(?:-[a-z]+)*\s*:\s*([^;]*)")
_REDIRECT = re.compile(r"^\s*#\s*\w+\s*:?\s*\[\[", re.UNICODE)


@dataclass(frozen=True)
class CleanConfig:
    """What the cleaner needs to know about one Wikipedia: its local namespace names and templates."""

    drop_link_prefixes: frozenset[str]
    disambiguation: frozenset[str]
    min_chars: int = 200

    @classmethod
    def for_dump(cls, namespaces: dict[int, str], disambiguation: tuple[str, ...], min_chars: int) -> "CleanConfig":
        """Links into the File (6), Media (-2) and Category (14) namespaces, under their local or canonical
        names, and interlanguage links (`[[fr:…]]`) are dropped."""
        local = {namespaces[k].lower() for k in (-2, 6, 14) if namespaces.get(k)}
        prefixes = frozenset(local | set(_FILE_NS) | set(_CATEGORY_NS) | set(WIKIPEDIAS))
        templates = _GENERIC_DISAMBIGUATION | {t.lower() for t in disambiguation}
        return cls(drop_link_prefixes=prefixes, disambiguation=frozenset(templates), min_chars=min_chars)


def is_disambiguation(code: Wikicode, config: CleanConfig) -> bool:
    for template in code.filter_templates(recursive=False):
        if str(template.name).strip().lower().replace("_", " ") in config.disambiguation:
            return True
    return False


def clean_wikitext(title: str, wikitext: str, config: CleanConfig) -> tuple[str | None, str]:
    """Return `(text, status)`: the cleaned article and "ok", or None and why it was left out
    ("redirect", "disambiguation", "short" or "unparsable")."""
    if _REDIRECT.match(wikitext):
        return None, "redirect"
    if "__DISAMBIG__" in wikitext:
        return None, "disambiguation"
    if "-{" in wikitext:
        wikitext = _CONVERSION.sub(_first_variant, wikitext)
    try:
        code = mwparserfromhell.parse(wikitext, skip_style_tags=True)
        if is_disambiguation(code, config):
            return None, "disambiguation"
        body = _tidy(_render(code, config))
    except Exception:  # mwparserfromhell can fail on pathological markup: one page is not worth the run
        return None, "unparsable"
    if len(body) < config.min_chars:
        return None, "short"
    return f"{title.strip()}\n{body}", "ok"


def tidy_plain(title: str, text: str, min_chars: int) -> tuple[str | None, str]:
    """The same layout for text that is already plain (the Hub's `wikimedia/wikipedia`, `--text` files)."""
    body = _tidy(text)
    if len(body) < min_chars:
        return None, "short"
    return (f"{title.strip()}\n{body}" if title else body), "ok"


def _first_variant(m: re.Match) -> str:
    variant = _VARIANT.match(m.group(1))
    return variant.group(1).strip() if variant else m.group(1)


def _render(code: Wikicode, config: CleanConfig) -> str:
    out: list[str] = []
    for node in code.nodes:
        if isinstance(node, Text):
            out.append(node.value)
        elif isinstance(node, Wikilink):
            out.append(_link_text(node, config))
        elif isinstance(node, ExternalLink):
            if node.title:
                out.append(_render(node.title, config))
        elif isinstance(node, Heading):
            out.append(f"\n{_HEADING}{_render(node.title, config).strip()}\n")
        elif isinstance(node, HTMLEntity):
            out.append(node.normalize())
        elif isinstance(node, Tag):
            out.append(_tag_text(node, config))
        # Templates, arguments, comments and parser functions carry no running text.
    return "".join(out)


def _link_text(link: Wikilink, config: CleanConfig) -> str:
    target = str(link.title).strip()
    if ":" in target and not target.startswith(":"):
        prefix = target.split(":", 1)[0].strip().lower()
        if prefix in config.drop_link_prefixes:
            return ""
    if link.text is not None:
        return _render(link.text, config)
    return target.lstrip(":").split("#", 1)[0] or target


def _tag_text(tag: Tag, config: CleanConfig) -> str:
    name = str(tag.tag).strip().lower()
    if name in _DROP_TAGS:
        return ""
    if tag.wiki_markup:  # list bullets, definition markers, rules: keep the line break only
        return "\n"
    inner = _render(tag.contents, config) if tag.contents is not None else ""
    return f"\n{inner}\n" if name in _BREAK_TAGS else inner


def _tidy(text: str) -> str:
    """Collapse spacing, drop empty and markup-only lines and headings of sections left empty."""
    lines = []
    for raw in _STYLE.sub("", text).replace("\r", "").split("\n"):
        line = _SPACE_BEFORE_STOP.sub("", _EMPTY_BRACKETS.sub("", _SPACES.sub(" ", raw))).strip()
        if line and not _JUNK_LINE.match(line.lstrip(_HEADING)):
            lines.append(line)
    kept = [
        line for i, line in enumerate(lines)
        if not line.startswith(_HEADING) or (i + 1 < len(lines) and not lines[i + 1].startswith(_HEADING))
    ]
    return "\n".join(line.lstrip(_HEADING) for line in kept)
