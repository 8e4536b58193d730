"""Wikitext cleaning: what stays (text, link texts, headings, paragraphs) and what goes."""
from __future__ import annotations

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
