"""Wikitext → plain text, in a few linear passes of compiled regular expressions and `str.find`.

Most of a page's bytes are markup that carries no running text: templates, references, tables, comments, maths,
galleries. The passes drop those first, as whole blocks, in the order MediaWiki itself resolves them: comments and
extension tags (`<ref>`, `<math>`, `<nowiki>`, …) in one left-to-right scan, then balanced `{{…}}` (templates,
parser functions and `{{{arguments}}}`), then `{|…|}` tables. What is left is running text with light markup:
links (their text stays; file, category and interlanguage links go), external links (their title stays), headings
and list items (each on a line of its own), HTML tags (dropped, their content stays) and entities (decoded).

Unbalanced markup never swallows the rest of a page, except an unclosed comment or table, which hide everything
after them in MediaWiki too: an unclosed `{{`, `[[File:…` or extension tag is dropped with the rest of its line, a
stray closer alone, and a link never reaches across a blank line.
Every pass is linear in the page's length, so pathological input (100k unmatched `{{`) costs what its length does.

A cleaned article is its title on the first line, then one paragraph or heading per line.
"""
from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass

from ulmfit.langs.wikipedias import WIKIPEDIAS

log = logging.getLogger(__name__)

# Extension and HTML tags whose content is not running text: dropped with everything between them.
_DROP_TAGS = frozenset({
    "ref", "references", "table", "gallery", "math", "chem", "ce", "timeline", "score", "imagemap", "graph",
    "syntaxhighlight", "source", "pre", "templatedata", "templatestyles", "mapframe", "maplink", "inputbox",
    "categorytree", "hiero", "section", "indicator", "noinclude", "includeonly", "onlyinclude",
})
# Tags that can hold themselves, so their closer is found by counting.
_NESTING_TAGS = frozenset({"table"})
# Tags that end a line (their content, if any, stays on a line of its own).
_BREAK_TAGS = frozenset({"br", "hr", "p", "div", "li", "dd", "dt", "tr", "blockquote", "poem"})
_GENERIC_DISAMBIGUATION = frozenset({"disambiguation", "disambig", "dab", "disamb", "hndis", "geodis"})
_FILE_NS = ("file", "image", "media")
_CATEGORY_NS = ("category",)
_HEADING = "\x00"
# Marks where the literal content of a <nowiki> block goes back once the markup passes are done. Control
# characters cannot occur in XML 1.0 text, so no page holds them.
_NOWIKI_OPEN, _NOWIKI_CLOSE = "\x01", "\x02"

# Block-level passes.
_BLOCK_TAGS = _DROP_TAGS | {"nowiki"}
_BLOCK_START = re.compile(
    r"<!--|<(" + "|".join(sorted(_BLOCK_TAGS, key=len, reverse=True)) + r")(?![\w-])([^<>]*?)(/?)>",
    re.IGNORECASE)
_CLOSERS = {name: re.compile(rf"</{name}\s*>", re.IGNORECASE) for name in _BLOCK_TAGS}
_NESTING = {name: re.compile(rf"<(/?){name}(?![\w-])[^<>]*?(/?)>", re.IGNORECASE) for name in _NESTING_TAGS}
_BRACES = re.compile(r"\{\{+|\}\}+")
_TEMPLATE_NAME = re.compile(r"\{*([^{}|]*)")
_TABLE_EDGE = re.compile(r"^[ \t:]*(\{\|)|^[ \t]*\|\}", re.MULTILINE)

# Inline passes.
_HTML_TAG = re.compile(r"</?([a-zA-Z][\w-]*)(?:\s[^<>]*)?/?>")
_URL_SCHEME = r"(?:(?:https?|ftps?|sftp|irc|ircs|news|nntp|gopher|telnet|svn|git|mms|ssh|worldwind)://|//|mailto:)"
_EXTERNAL_LINK = re.compile(  # the URL ends at a space (any kind) or at '' (italics starting the title)
    r"\[" + _URL_SCHEME + r"(?:[^\s\[\]<>\"']|'(?!'))*(?:(?:[^\S\n]+|(?=''))([^\[\]\n]*))?\]", re.IGNORECASE)
_BARE_URL = re.compile(r"(?<![\w/])(?:https?|ftps?)://[^\s\[\]<>\"{}|]+", re.IGNORECASE)
_URL_TRAIL = ".,;:!?'\")"
# [[target]] or [[target|text]]; the text may hold single brackets ("[sic]", "[[Hexol|[Co(OH)2]]]") and line
# breaks, but no blank line: an unclosed file link must not reach a stray "]]" paragraphs away.
_LINK = re.compile(
    r"\[\[([^\[\]|\n]*(?:\n[ \t]*(?=\|))?)"  # target (a line break before the "|" happens)
    r"(?:\|([^\[\]\n]*(?:(?:\n(?!\s*\n)|\[[^\[\]\n]*\])[^\[\]\n]*)*))?"  # text
    r"\]\]")
_LINK_PASSES = 4  # file captions hold links; deeper nesting than this is broken markup
_UNCLOSED_NS_LINK = re.compile(r"\[\[[^\[\]|\n:]*:[^\n]*")
_MEDIA_FILE = re.compile(  # Namespace:name.ext: one colon, a bare prefix (not commons:File:x.pdf, not a#/media/…)
    r"^(?:\[\[)?[^:#/]*:[^:#/]*"
    r"\.(?:jpe?g|png|svg|gif|tiff?|webp|xcf|pdf|djvu|ogg|oga|ogv|webm|mp3|mp4|wav|flac|midi?|stl)\s*$",
    re.IGNORECASE)
# Line-start markup. The patterns start with a literal "\n" rather than a multi-line "^", which lets the regex
# engine skip to the next line break instead of trying every position; `_render` puts a "\n" before the text.
_HEADING_LINE = re.compile(r"\n(=+)(.+?)(=+)[ \t]*(?![^\n])")
_HEADING_TEXT = re.compile(r"\n(={2,})([^=\n]+)=+([^\n]+)")
_TERM_END = re.compile(r"[\[\]:]")  # the colon that ends a `;term` is outside any link
_LIST_ITEM = re.compile(r"\n([*#:;]+)([^\n]*)")
_RULE = re.compile(r"\n-{4,}")
_TABLE_LEFTOVER = re.compile(r"\n[ \t]*(?:\{\||\||!)[^\n]*")
_NOWIKI_SLOT = re.compile(_NOWIKI_OPEN + r"(\d+)" + _NOWIKI_CLOSE)
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_BEHAVIOUR_SWITCH = re.compile(r"__[A-Z]+__")

# Tidying.
_STYLE = re.compile(r"'{2,}")
# Whitespace other than a single space (a single space is left alone: matching every one costs a third of `_tidy`).
_SPACES = re.compile(r"(?: [^\S\n]|[^\S \n])[^\S\n]*")
_SPACE_BEFORE_STOP = re.compile(r" (?=[,.](?:\s|$))")  # left where a reference or template was removed
_JUNK_LINE = re.compile(r"^[\W_]*$")  # a line of punctuation alone, left over from markup
# left by a removed {{lang|…}}
_EMPTY_BRACKETS = re.compile(r" [(（] *[,;，；、]? *[)）]|[(（] *[,;，；、]? *[)）]")
# MediaWiki's language-conversion markup (zh, sr, kk, …): -{text}- or -{zh-hans:简; zh-hant:繁;}-
_CONVERSION = re.compile(r"-\{(?:[^{}|]*\|)?([^{}]*?)\}-")
_VARIANT = re.compile(r"^\s*[a-z]{2,3}(?:-[a-z]+)*\s*:\s*([^;]*)")
_REDIRECT = re.compile(r"^\s*#\s*\w+\s*:?\s*\[\[", re.UNICODE)

Span = tuple[int, int]


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
        text, nowiki = _drop_tag_blocks(wikitext)
        text, templates = _drop_templates(text)
        if any(_template_key(name) in config.disambiguation for name in templates):
            return None, "disambiguation"
        body = _tidy(_render(_drop_tables(text), nowiki, config))
    except Exception:  # a bug met on one odd page should cost that page, not a day-long run
        log.debug("cannot clean %r", title, exc_info=True)
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


def _template_key(name: str) -> str:
    return name.strip().lower().replace("_", " ")


# --- block passes -------------------------------------------------------------------------------------------------

def _cut(text: str, spans: list[Span]) -> str:
    """`text` without the spans (sorted by start; they may overlap or nest). A line that held nothing but removed
    spans goes as a whole, so that a blank line left is one the source had (a paragraph break)."""
    if not spans:
        return text
    parts, pos = [], 0
    at_line_start = True
    for start, end in spans:
        if end <= pos:
            continue
        if start > pos:
            parts.append(text[pos:start])
            at_line_start = text[start - 1] == "\n"
        pos = end
        if at_line_start and text.startswith("\n", pos):
            pos += 1
    parts.append(text[pos:])
    return "".join(parts)


def _line_end(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end < 0 else end


def _drop_tag_blocks(text: str) -> tuple[str, list[str]]:
    """Drop comments and the drop-tag blocks; keep each `<nowiki>` block's content aside, behind a numbered slot.

    One left-to-right scan, as in MediaWiki: whichever opens first hides what follows up to its closer, so a
    `<!--` inside `<math>` is not a comment and a `</ref>` inside a comment closes nothing. Extension tags do not
    nest: their closer is the next one of the same name (a name whose closer is missing once is missing for every
    later opener, so each name's closer is searched for at most once past the last one found).
    """
    if "<" not in text:
        return text, []
    parts: list[str] = []
    nowiki: list[str] = []
    missing: set[str] = set()
    nesting: dict[str, dict[int, Span]] = {}
    pos = 0
    while (m := _BLOCK_START.search(text, pos)) is not None:
        parts.append(text[pos:m.start()])
        if m.group(0) == "<!--":
            end = text.find("-->", m.end())
            if end < 0:  # an unclosed comment runs to the end of the page
                return "".join(parts), nowiki
            pos = end + 3
            continue
        name = m.group(1).lower()
        if m.group(3):  # self-closing: <ref name="a"/>, <references/>, <nowiki/>
            pos = m.end()
            continue
        if name in _NESTING_TAGS:
            if name not in nesting:
                nesting[name] = _match_nesting(text, name)
            closer = nesting[name].get(m.start())
        else:
            closer = _closer(text, name, m.end(), missing)
        if closer is None:  # unclosed: drop the opener with the rest of its line
            pos = m.end() if name == "nowiki" else _line_end(text, m.end())
            continue
        if name == "nowiki":
            parts.append(f"{_NOWIKI_OPEN}{len(nowiki)}{_NOWIKI_CLOSE}")
            nowiki.append(text[m.end():closer[0]])
        pos = closer[1]
    parts.append(text[pos:])
    return "".join(parts), nowiki


def _closer(text: str, name: str, pos: int, missing: set[str]) -> Span | None:
    if name in missing:
        return None
    closer = _CLOSERS[name].search(text, pos)
    if closer is None:
        missing.add(name)
        return None
    return closer.span()


def _match_nesting(text: str, name: str) -> dict[int, Span]:
    """Opener start → span of its matching closer, for a tag that can hold itself (`<table>` in `<table>`)."""
    stack: list[int] = []
    pairs: dict[int, Span] = {}
    for m in _NESTING[name].finditer(text):
        if m.group(2):
            continue
        if not m.group(1):
            stack.append(m.start())
        elif stack:
            pairs[stack.pop()] = m.span()
    return pairs


def _drop_templates(text: str) -> tuple[str, list[str]]:
    """Drop every `{{…}}` (templates, parser functions, `{{{arguments}}}`), nested or not; return the text and the
    names of the outermost templates.

    Braces are matched the way MediaWiki's preprocessor does it: a run of closing braces closes the innermost open
    run, three at a time where both runs have three (an argument), else two (a template); a brace left over is
    literal. An unclosed `{{` is dropped with the rest of its line and the complete templates inside it stay
    outermost; stray `}}` are dropped.
    """
    if "{{" not in text and "}}" not in text:
        return text, []
    stack: list[list] = []  # [run start, braces left, complete outermost templates inside it]
    spans: list[Span] = []
    for m in _BRACES.finditer(text):
        start, end = m.span()
        if text[start] == "{":
            stack.append([start, end - start, []])
            continue
        left = end - start
        while left >= 2 and stack:
            top = stack[-1]
            used = 3 if left >= 3 and top[1] >= 3 else 2
            top[1] -= used
            left -= used
            if top[1] < 2:
                stack.pop()
                span = (top[0] + top[1], end - left)
                (stack[-1][2] if stack else spans).append(span)
        if left >= 2:
            spans.append((end - left, end))
    covered = 0
    for start, _, inner in stack:  # unclosed, outermost first
        spans.extend(inner)
        if start >= covered:
            covered = _line_end(text, start)
            spans.append((start, covered))
    spans.sort()
    names = [_TEMPLATE_NAME.match(text, start).group(1) for start, end in spans if text.startswith("{{", start)]
    return _cut(text, spans), names


def _drop_tables(text: str) -> str:
    """Drop `{|…|}` tables, nested or not; an unclosed table runs to the end of the page, as MediaWiki renders it."""
    if "{|" not in text:
        return text
    spans: list[Span] = []
    opened: list[int] = []
    for m in _TABLE_EDGE.finditer(text):
        if m.group(1):
            opened.append(m.start())
        elif opened:
            start = opened.pop()
            if not opened:
                spans.append((start, m.end()))
    if opened:
        spans.append((opened[0], len(text)))
    return _cut(text, spans)


# --- inline passes ------------------------------------------------------------------------------------------------

def _render(text: str, nowiki: list[str], config: CleanConfig) -> str:
    """Running text with its light markup resolved; headings marked with `_HEADING` on lines of their own.

    Line-start markup goes first, while the line starts are the source's (`::<code>#include</code>` is an indented
    line of code, not a numbered list). Links go from the inside out, internal ones before external ones (a file's
    caption may hold an external link, an external link's title an internal one), and before the HTML tags, whose
    line breaks would split a caption. Table rows left over (from a table whose `{|` was in a removed template)
    go once the links are resolved, since a caption's lines may start with `|` too.
    """
    text = "\n" + text
    if "\n=" in text:
        text = _HEADING_LINE.sub(_heading, text)
        text = _HEADING_TEXT.sub(_heading_with_text, text)
    text = _LIST_ITEM.sub(_list_item, text)
    if "\n----" in text:
        text = _RULE.sub("\n\n", text)
    if "[[" in text or "]]" in text:
        text = _links(text, config)
    if "[" in text:
        text = _EXTERNAL_LINK.sub(lambda m: m.group(1) or "", text)
    if "://" in text:
        text = _BARE_URL.sub(_url_trail, text)
    if "<" in text:
        text = _HTML_TAG.sub(_html_tag, text)
    text = _TABLE_LEFTOVER.sub("\n", text)
    if nowiki:
        text = _NOWIKI_SLOT.sub(lambda m: nowiki[int(m.group(1))], text)
    if "&" in text:
        text = _ENTITY.sub(lambda m: html.unescape(m.group()), text)
    if "__" in text:
        text = _BEHAVIOUR_SWITCH.sub("", text)
    return text


def _html_tag(m: re.Match) -> str:
    """A tag the block passes left goes, its content stays (`<span>`, `<small>`, a stray `</ref>`, a pasted
    `<img>`); one that starts a block (`<br>`, `<div>`, `<p>`) leaves a line break."""
    return "\n" if m.group(1).lower() in _BREAK_TAGS else ""


def _url_trail(m: re.Match) -> str:
    """Keep the punctuation that ends a sentence after a bare URL (`see http://x.org.`)."""
    url = m.group()
    return url[len(url.rstrip(_URL_TRAIL)):]


def _links(text: str, config: CleanConfig) -> str:
    """Resolve `[[…]]` from the innermost out, so the links in a file's caption go before the file link does.

    Brackets left over after that are broken markup (an unclosed link, a stray `]]`): they go, and so does the
    rest of the line after an unclosed file or category link.
    """
    def link(m: re.Match) -> str:
        target = m.group(1).strip()
        if ":" in target and not target.startswith(":") and _dropped_link(target, config):
            return ""
        if m.group(2) is not None:
            return m.group(2)
        return target.lstrip(":").split("#", 1)[0] or target

    def unclosed(m: re.Match) -> str:  # the rest of the line is the file's caption or the category's sort key
        return "" if _dropped_link(m.group(), config) else m.group()

    for _ in range(_LINK_PASSES):
        text, n = _LINK.subn(link, text)
        if not n or "[[" not in text:
            break
    if "[[" in text:
        text = _UNCLOSED_NS_LINK.sub(unclosed, text).replace("[[", "")
    return text.replace("]]", "")


def _dropped_link(target: str, config: CleanConfig) -> bool:
    """A link into the file or category namespace or to another language's Wikipedia (`target` has a colon).

    A media file's name gives it away under any of the namespace's aliases, which `siteinfo` does not list
    (viwiki's `[[Hình:x.jpg|…]]` as well as `[[Tập tin:x.jpg|…]]`).
    """
    prefix = target[2:] if target.startswith("[[") else target
    prefix = prefix.split(":", 1)[0].strip().lower().replace("_", " ")
    return prefix in config.drop_link_prefixes or _MEDIA_FILE.match(target.split("|", 1)[0]) is not None


def _heading(m: re.Match) -> str:
    left, title, right = m.groups()
    level = min(len(left), len(right))
    return f"\n\n{_HEADING}{(left[level:] + title + right[:len(right) - level]).strip()}\n"


def _heading_with_text(m: re.Match) -> str:
    """`== Title ==text on the same line`: MediaWiki shows it as it stands, but the title is a heading."""
    return f"\n\n{_HEADING}{m.group(2).strip()}\n{m.group(3)}"


def _list_item(m: re.Match) -> str:
    """A list item or definition on a line of its own, without its markers; `;term: definition` gives two lines."""
    marks, rest = m.groups()
    if ";" in marks:
        depth = 0
        for mark in _TERM_END.finditer(rest):
            if mark.group() == "[":
                depth += 1
            elif mark.group() == "]":
                depth = max(depth - 1, 0)
            elif not depth:
                rest = f"{rest[:mark.start()]}\n{rest[mark.end():]}"
                break
    return "\n\n" + rest


def _tidy(text: str) -> str:
    """Collapse spacing, drop empty and markup-only lines and headings of sections left empty.

    Each substitution runs once over the whole text (none of them can reach across a line break).
    """
    text = _SPACES.sub(" ", _STYLE.sub("", text).replace("\r", ""))
    text = _SPACE_BEFORE_STOP.sub("", _EMPTY_BRACKETS.sub("", text))
    lines = [line for line in map(str.strip, text.split("\n"))
             if line and not _JUNK_LINE.match(line.lstrip(_HEADING))]
    kept = [
        line for i, line in enumerate(lines)
        if not line.startswith(_HEADING) or (i + 1 < len(lines) and not lines[i + 1].startswith(_HEADING))
    ]
    return "\n".join(line.lstrip(_HEADING).lstrip() for line in kept)
