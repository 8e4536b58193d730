"""Wikitext cleaning: what stays (text, link texts, headings, paragraphs) and what goes."""
from __future__ import annotations

import random
import time

from ulmfit.pretrain.clean import CleanConfig, clean_wikitext, tidy_plain

NAMESPACES = {-2: "Medium", 6: "Datei", 14: "Kategorie"}
CONFIG = CleanConfig.for_dump(NAMESPACES, ("begriffsklärung",), min_chars=20)

WIKITEXT = """{{Infobox Fluss
| Name = Rhein
| Länge = 1233
}}
'''Der Rhein''' ist ein [[Strom (Gewässer)|Strom]] in [[Europa]].<ref>Quelle, S. 3</ref> Er fließt&nbsp;durch die [[Schweiz]].<ref name="a" />
[[Datei:Rhein.jpg|mini|Der Rhein bei [[Basel]]]]
[[File:Other.png|thumb]]
<!-- eine Anmerkung -->
== Verlauf ==
Der Fluss ist {{convert|1233|km}} lang und ''sehr'' bekannt. Siehe [https://example.org die Seite].
{| class="wikitable"
! Ort !! Kilometer
|-
| Basel || 170
|}
* erster Punkt
* zweiter Punkt
== Einzelnachweise ==
<references />
== Weblinks ==
{{Commonscat|Rhein}}
[[Kategorie:Fluss in Europa]]
[[Category:River]]
[[en:Rhine]]
[[fr:Rhin]]
"""


def test_clean_keeps_text_and_drops_markup():
    text, status = clean_wikitext("Rhein", WIKITEXT, CONFIG)
    assert status == "ok"
    assert text == (
        "Rhein\n"
        "Der Rhein ist ein Strom in Europa. Er fließt\xa0durch die Schweiz.".replace("\xa0", " ") + "\n"
        "Verlauf\n"
        "Der Fluss ist lang und sehr bekannt. Siehe die Seite.\n"
        "erster Punkt\n"
        "zweiter Punkt"
    )


def test_disambiguation_pages_are_left_out():
    assert clean_wikitext("Rhein (Begriffsklärung)", "'''Rhein''' steht für:\n* [[Rhein]]\n{{Begriffsklärung}}",
                          CONFIG) == (None, "disambiguation")
    assert clean_wikitext("X", "X may mean a lot of things here.\n{{disambiguation}}", CONFIG)[1] == "disambiguation"
    assert clean_wikitext("X", "X may mean a lot of things.\n__DISAMBIG__", CONFIG)[1] == "disambiguation"


def test_redirect_text_and_short_articles():
    assert clean_wikitext("A", "#WEITERLEITUNG [[Rhein]]", CONFIG) == (None, "redirect")
    assert clean_wikitext("A", "#REDIRECT [[Rhine]]", CONFIG) == (None, "redirect")
    assert clean_wikitext("A", "{{Stub}} Kurz.", CONFIG) == (None, "short")


def test_link_forms():
    text, _ = clean_wikitext("L", "Ein Link auf [[:Kategorie:Flüsse|die Flüsse]] und [[Rhein#Lauf]] "
                                  "und [[Wiktionary:Fluss|Fluss]] bleibt lesbar.", CONFIG)
    assert text == "L\nEin Link auf die Flüsse und Rhein und Fluss bleibt lesbar."


def test_plain_text_layout():
    assert tidy_plain("Title", "First  paragraph.\n\n\nSecond\tparagraph here.", 10) == (
        "Title\nFirst paragraph.\nSecond paragraph here.", "ok")
    assert tidy_plain("", "tiny", 10) == (None, "short")


def test_leftovers_of_removed_templates_and_conversion_markup():
    wikitext = "'''漓江'''（{{lang-en|Li River}}）是一条河流。-{zh-hans:苏州; zh-hant:蘇州;}-以园林闻名，-{H|江}-也是。"
    text, _ = clean_wikitext("漓江", wikitext * 3, CONFIG)
    assert text.split("\n")[1].startswith("漓江是一条河流。苏州以园林闻名，江也是。")
    text, _ = clean_wikitext("Rhein", "Der '''Rhein''' ({{lang|la|Rhenus}}) ist ein Fluss mit vielen Worten.", CONFIG)
    assert text == "Rhein\nDer Rhein ist ein Fluss mit vielen Worten."


# --- the block passes: each markup class, its unbalanced forms, and input that must not cost more than its length

OPEN = CleanConfig.for_dump(NAMESPACES, ("begriffsklärung",), min_chars=0)


def body(wikitext: str) -> str:
    """The cleaned text without its title line."""
    text, status = clean_wikitext("T", wikitext, OPEN)
    assert status == "ok"
    return text.split("\n", 1)[1]


def test_nested_templates_and_arguments_go_whole():
    assert body("Vor {{Außen|a={{Innen|b={{Tief}}}}|c=d}} nach.") == "Vor nach."
    assert body("Vor {{{1|{{Vorlage}}}}} nach {{#if:{{{x|}}}|ja|nein}}.") == "Vor nach."
    assert body("Ein {{a|{{b}}}}} Rest.") == "Ein } Rest."  # a brace left over is literal, as in MediaWiki


def test_templates_inside_links_and_links_inside_templates():
    assert body("Der [[Rhein|{{lang|de|Rhein}}Fluss]] fließt.") == "Der Fluss fließt."
    assert body("Ein {{Infobox|Ort=[[Basel]]|Bild=[[Datei:B.jpg|mini]]}}Satz.") == "Ein Satz."


def test_unclosed_template_drops_its_line_and_parameter_lines_only():
    wikitext = "Erster Satz.\n{{Infobox Fluss\n| Name = Rhein\n| Länge = 1233\nZweiter Satz.\n"
    assert body(wikitext) == "Erster Satz.\nZweiter Satz."
    assert body("Text am Ende. {{Navigationsleiste|") == "Text am Ende."
    assert body("Noch {{a}} da, {{offen und {{b}} weg") == "Noch da,"


def test_stray_closing_markup_goes():
    assert body("Ein }} Satz ]] mit </ref> Resten.") == "Ein Satz mit Resten."


def test_unclosed_ref_and_comment():
    assert body("Satz eins.<ref>Quelle ohne Ende\nSatz zwei bleibt.") == "Satz eins.\nSatz zwei bleibt."
    assert body("Satz eins.<ref name=\"q\">Quelle ohne Ende") == "Satz eins."
    assert body("Sichtbar.<!-- eine Anmerkung ohne Ende\nunsichtbar") == "Sichtbar."  # as MediaWiki renders it


def test_self_closing_refs_and_references():
    assert body('Eins.<ref name=x/> Zwei.<ref name="y" /> Drei.<ref>Q</ref>\n<references />\n<references/>') == (
        "Eins. Zwei. Drei.")
    assert body("A<ref group=n>eins</ref> und B.<ref>zwei <ref>drei</ref> bleibt.") == "A und B. bleibt."


def test_extension_tags_hide_what_looks_like_markup():
    assert body("Vor <math>\\frac{a}{b}}} <!-- \\{\\{ </math>nach.") == "Vor nach."
    assert body("Formel <math display=block>x^{{2}}</math> und <chem>H2O</chem> Ende.") == "Formel und Ende."
    assert body("Code <syntaxhighlight lang=html><!-- x --> {{</syntaxhighlight>hier.") == "Code hier."
    assert body("Eine <!-- <ref>nicht</ref> {{auch nicht}} --> Zeile.") == "Eine Zeile."


def test_galleries_timelines_and_html_tables():
    assert body("Vor.\n<gallery>\nDatei:A.jpg|Ein [[Bild]]\nB.png|Zwei\n</gallery>\nNach.") == "Vor.\nNach."
    assert body("Vor.\n<table><tr><td><table><tr><td>x</td></tr></table> y</td></tr></table>\nNach.") == "Vor.\nNach."
    assert body("Vor.\n<timeline>\nImageSize = width:100\n</timeline>\nNach.") == "Vor.\nNach."


def test_nowiki_content_stays_literal():
    assert body("Man schreibt <nowiki>[[Link]] und {{Vorlage}}</nowiki> im Quelltext.") == (
        "Man schreibt [[Link]] und {{Vorlage}} im Quelltext.")
    assert body("Ein [[Link]]<nowiki/>s und <nowiki>&amp;</nowiki> Zeichen.") == "Ein Links und & Zeichen."
    assert body("Eins {{a|<nowiki>}}</nowiki>}} zwei.") == "Eins zwei."


def test_tables_nested_inside_templates_and_with_pipe_templates():
    wikitext = ("Vor.\n{|\n| a\n{| class=x\n| innen\n|}\n| b\n|}\nZwischen.\n"
                "{{Box|\n{| class=wikitable\n| c || d\n|}\n}}\n"
                "{{Box|\n{{{!}} class=wikitable\n{{!}} e {{!}}{{!}} f\n{{!}}}\n}}\n"
                "{|\n| g {{!}} h\n|-\n! i\n|}\nNach.")
    assert body(wikitext) == "Vor.\nZwischen.\nNach."


def test_table_rows_left_from_a_table_opened_in_a_template_do_not_leak():
    assert body("Vor.\n{{Tabellenanfang}}\n| a || b\n|-\n! c\n{{Tabellenende}}\nNach.") == "Vor.\nNach."


def test_unclosed_table_runs_to_the_end_of_the_page():
    assert body("Vor.\n{| class=wikitable\n| a\n|-\n| b") == "Vor."


def test_file_links_under_aliases_and_captions_with_links():
    assert body("Vor.\n[[Datei:Rhein.jpg|mini|Der [[Rhein]] bei [http://x.org Basel] [sic]]]\nNach.") == "Vor.\nNach."
    assert body("Vor.\n[[Bild:Rhein.jpg|mini|Ein Bild]] [[Datei_Alt:Karte.svg|Karte]]\nNach.") == "Vor.\nNach."
    assert body("Ein [[commons:File:Buch.pdf|Buch]] und [[Rhein#/media/Datei:R.jpg|Bild]].") == "Ein Buch und Bild."


def test_unclosed_file_link_does_not_reach_across_paragraphs():
    wikitext = "[[Datei:X.jpg|mini|Ein Bild\n\nDer Absatz bleibt, mit [[Link]].\n\nUnd noch einer.]] Ende."
    assert body(wikitext) == "Der Absatz bleibt, mit Link.\nUnd noch einer. Ende."


def test_line_markup_headings_lists_and_definitions():
    wikitext = ("Einleitung.\n== Teil ==\nText.\n=== Leer ===\n== Zwei ==text danach\n"
                "* eins\n*# zwei\n; Begriff: Erklärung mit [[a:b|Link]]\n: eingerückt\n----\nSchluss __NOTOC__")
    assert body(wikitext) == (
        "Einleitung.\nTeil\nText.\nZwei\ntext danach\neins\nzwei\nBegriff\nErklärung mit Link\neingerückt\nSchluss")


def test_links_external_links_and_entities():
    wikitext = ("Siehe [[Rhein|den Rhein]]s, [[Basel]], [https://example.org Beispiel&nbsp;Seite], "
                "[https://example.org] und https://example.org/x. Auch [[Hexol|[Co(OH)2]]] &amp; &#91;1&#93;.")
    assert body(wikitext) == "Siehe den Rheins, Basel, Beispiel Seite, und. Auch [Co(OH)2] & [1]."


def test_html_tags_go_and_line_breaking_ones_break_the_line():
    assert body("Eins<br>zwei<br/>drei <span style=x>vier</span> <small>fünf</small><div>sechs</div>") == (
        "Eins\nzwei\ndrei vier fünf\nsechs")


def test_disambiguation_only_from_templates_on_the_page_itself():
    assert clean_wikitext("X", "Ein Text der lang genug ist.\n<!-- {{Begriffsklärung}} -->", OPEN)[1] == "ok"
    assert clean_wikitext("X", "Ein Text.<ref>{{Begriffsklärung}}</ref> Mehr Text hier.", OPEN)[1] == "ok"
    assert clean_wikitext("X", "Ein Text der lang genug ist.\n{{ Begriffsklärung\n}}", OPEN)[1] == "disambiguation"


PATHOLOGICAL = {
    "unmatched {{": "{{" * 100_000,
    "unmatched {{ apart": "{{a " * 100_000,
    "unmatched [[ apart": "[[a " * 100_000,
    "unmatched -{": "-{a " * 100_000,
    "unclosed tags": "<span " * 100_000,
    "unclosed file links": "[[Datei:a.jpg|" * 50_000,
    "unmatched }}": "}}" * 100_000,
    "unmatched [[": "[[" * 100_000,
    "unmatched ]]": "]]" * 100_000,
    "[[ and text": "[[a|" * 50_000,
    "unclosed refs": "<ref>x " * 50_000,
    "unclosed html tables": "<table>" * 50_000,
    "unclosed nowiki": "<nowiki>" * 50_000,
    "tables": "{|\n" * 50_000,
    "comments": "<!--" * 50_000,
    "braces and lines": "{{a\n" * 50_000,
    "headings": "==" * 100_000,
    "quotes": "'" * 200_000,
    "external links": "[http://x " * 50_000,
    "conversion": "-{" * 100_000,
    "random markup": "".join(random.Random(0).choice(
        ["{{", "}}", "[[", "]]", "{|", "|}", "\n", "|", "<ref>", "</ref>", "-->", "''", "=", "x ", "[http://a ",
         "]", "<nowiki>", "&amp;", "*", ":", "-{", "}-", "<table>", "</table>", "http://b "]) for _ in range(100_000)),
}


def test_pathological_markup_costs_what_its_length_does():
    for name, wikitext in PATHOLOGICAL.items():
        start = time.process_time()
        clean_wikitext("T", wikitext, OPEN)
        assert time.process_time() - start < 1.0, name
