"""Small MediaWiki dumps built inside a test: the shapes real dumps take, without real data."""
from __future__ import annotations

import bz2
import re
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr, unescape

HEADER = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="{lang}">
  <siteinfo>
    <sitename>Wikipedia</sitename>
    <dbname>{lang}wiki</dbname>
    <namespaces>
      <namespace key="-2" case="first-letter">Media</namespace>
      <namespace key="0" case="first-letter" />
      <namespace key="6" case="first-letter">{file_ns}</namespace>
      <namespace key="14" case="first-letter">{category_ns}</namespace>
    </namespaces>
  </siteinfo>
"""
PAGE = """  <page>
    <title>{title}</title>
    <ns>{ns}</ns>
    <id>{id}</id>{redirect}
    <revision>
      <id>{id}0</id>
      <model>wikitext</model>
      <format>text/x-wiki</format>
      <text xml:space="preserve">{text}</text>
    </revision>
  </page>
"""


def article(title: str, words: int = 80) -> str:
    """A plain article body of `words` distinct-ish words, long enough to pass the default length filter."""
    body = " ".join(f"{title.lower()}{i % 7} word{i}" for i in range(words))
    return f"'''{title}''' is a subject.\n\n== History ==\n{body}.\n\n[[Category:Things]]"


def dump_xml(pages: list[dict], lang: str = "en", file_ns: str = "File", category_ns: str = "Category",
             close: bool = True) -> str:
    """`pages`: dicts with title, text and optionally ns (default 0) and redirect (a target title)."""
    parts = [HEADER.format(lang=lang, file_ns=file_ns, category_ns=category_ns)]
    for i, page in enumerate(pages, 1):
        redirect = f'\n    <redirect title={quoteattr(page["redirect"])} />' if page.get("redirect") else ""
        parts.append(PAGE.format(title=escape(page["title"]), ns=page.get("ns", 0), id=i, redirect=redirect,
                                 text=escape(page["text"])))
    if close:
        parts.append("</mediawiki>\n")
    return "".join(parts)


def write_dump(path: Path, pages: list[dict], **kwargs) -> Path:
    path.write_text(dump_xml(pages, **kwargs), encoding="utf-8")
    return path


def multistream(xml: str, per_stream: int = 100, encoding: str = "utf-8") -> tuple[bytes, str, list[int]]:
    """`xml` (from `dump_xml`) laid out as Wikipedia's `-multistream.xml.bz2`: a bz2 stream for everything before
    the first page, one per `per_stream` pages, one for what follows the last page (`</mediawiki>`, if any).

    Returns the file's bytes, the text of its index (`OFFSET:PAGE_ID:TITLE` per page) and every stream's offset.
    """
    starts = [m.start() for m in re.finditer(r"  <page>", xml)]
    ends = [m.end() for m in re.finditer(r"</page>\n", xml)]
    cuts = [0, starts[0]] + [ends[i - 1] for i in range(per_stream, len(ends), per_stream)] + [ends[-1], len(xml)]
    data, offsets = b"", []
    for a, b in zip(cuts, cuts[1:]):
        if a == b:
            continue
        offsets.append(len(data))
        data += bz2.compress(xml[a:b].encode(encoding) if a == 0 else _encode_more(xml[a:b], encoding))
    titles = [unescape(t) for t in re.findall(r"<title>(.*?)</title>", xml)]
    index = "".join(f"{offsets[1 + i // per_stream]}:{i + 1}:{title}\n" for i, title in enumerate(titles))
    return data, index, offsets


def _encode_more(text: str, encoding: str) -> bytes:
    """`text` encoded to follow what came before: no second byte-order mark."""
    return text.encode("utf-16-le" if encoding.lower().replace("_", "-") == "utf-16" else encoding)
