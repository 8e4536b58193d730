"""The language registry: every adapter is consistent, other Wikipedias get the generic one, bad codes get one
clear sentence."""
from __future__ import annotations

import importlib
import pickle
import re
from pathlib import Path

import pytest

import ulmfit.langs as langs
from ulmfit.errors import UlmfitError
from ulmfit.langs import ADAPTERS, get_lang, list_langs
from ulmfit.langs.wikipedias import WIKIPEDIAS

LANGS_DIR = Path(langs.__file__).parent


def is_one_sentence(message: str) -> bool:
    """One line, ending in a full stop, with no sentence end inside."""
    return "\n" not in message and message.endswith(".") and not re.search(r"[.!?]\s", message)


def test_every_adapter_module_is_registered():
    modules = {p.stem for p in LANGS_DIR.glob("*.py") if re.search(r"^LANG = ", p.read_text("utf-8"), re.M)}
    assert modules == set(ADAPTERS)


@pytest.mark.parametrize("code", ADAPTERS)
def test_adapter_fields(code):
    lang = get_lang(code)
    assert lang is importlib.import_module(f"ulmfit.langs.{code}").LANG
    assert lang.code == code
    assert lang.name == WIKIPEDIAS[code]
    assert not lang.generic
    assert lang.wiki == f"{code}wiki"
    assert lang.hf_config == f"20231101.{code}"
    assert lang.dump_url() == f"https://dumps.wikimedia.org/{code}wiki/latest/{code}wiki-latest-pages-articles-multistream.xml.bz2"
    assert lang.dump_url("20240601", base="http://mirror/") == (
        f"http://mirror/{code}wiki/20240601/{code}wiki-20240601-pages-articles-multistream.xml.bz2"
    )
    assert lang.word_tokenizer in ("spacy", "pythainlp", "jieba", None)
    assert 0.999 <= lang.sp_coverage <= 1.0
    assert lang.word_joiner in ("", " ")
    assert lang.disambiguation and all(t == t.lower().strip() and t for t in lang.disambiguation)
    if lang.normalize is not None:
        # Sent to worker processes by reference, so it must be a module-level function.
        assert pickle.loads(pickle.dumps(lang.normalize)) is lang.normalize


def test_scripts_without_case_or_spaces():
    uncased = {lang.code for lang in list_langs() if not lang.has_case}
    assert uncased == {"th", "zh", "ja", "ko", "ar", "hi", "bn", "mr"}
    unspaced = {lang.code for lang in list_langs() if lang.word_joiner == ""}
    assert unspaced == {"th", "zh", "ja"}


def test_list_langs():
    assert [lang.code for lang in list_langs()] == list(ADAPTERS)
    every = list_langs(include_generic=True)
    assert sorted(lang.code for lang in every) == sorted(WIKIPEDIAS)
    assert all(lang.generic == (lang.code not in ADAPTERS) for lang in every)


@pytest.mark.parametrize("code", ["eo", "sw", "simple", "zh-yue", "be-tarask"])
def test_generic_adapter(code):
    lang = get_lang(code)
    assert lang.generic
    assert lang.code == code
    assert lang.name == WIKIPEDIAS[code]
    assert lang.wiki == code.replace("-", "_") + "wiki"


def test_generic_dump_name_uses_underscores():
    assert get_lang("zh-yue").dump_url() == (
        "https://dumps.wikimedia.org/zh_yuewiki/latest/zh_yuewiki-latest-pages-articles-multistream.xml.bz2"
    )


def test_code_is_trimmed_and_lower_cased():
    assert get_lang(" VI ") is get_lang("vi")


@pytest.mark.parametrize("code", ["xx", "qqq", "e n", "english!", "", "x", "123"])
def test_bad_code_is_one_sentence(code):
    with pytest.raises(UlmfitError) as err:
        get_lang(code)
    assert is_one_sentence(str(err.value)), str(err.value)


def test_typo_gets_close_matches():
    with pytest.raises(UlmfitError, match=r"did you mean [^)]*\bvi\b"):
        get_lang("vii")


def test_wikipedias_table():
    assert len(WIKIPEDIAS) > 330
    assert list(WIKIPEDIAS) == sorted(WIKIPEDIAS)
    odd_codes = {"simple", "zh-yue", "zh-min-nan", "zh-classical", "be-tarask", "bat-smg", "roa-tara", "cbk-zam"}
    assert odd_codes <= set(WIKIPEDIAS)
    assert all(name and name == name.strip() for name in WIKIPEDIAS.values())
    assert set(ADAPTERS) <= set(WIKIPEDIAS)


def test_code_pattern():
    assert [code for code in WIKIPEDIAS if not langs._CODE.match(code)] == []
    for garbage in ("e n", "english!", "x", "123", "", "en-", "-en", "en--us"):
        assert not langs._CODE.match(garbage), garbage


@pytest.mark.parametrize("typed, suggested", [
    ("thai", "th (Thai)"),
    ("Vietnamese", "vi (Vietnamese)"),
    ("english!", "en (English)"),
    ("deu", "de (German)"),
    ("zho", "zh (Chinese)"),
])
def test_names_and_three_letter_codes_get_real_codes(typed, suggested):
    with pytest.raises(UlmfitError, match=r"did you mean ") as err:
        get_lang(typed)
    assert str(err.value).split("did you mean ")[1].startswith(suggested)
    assert is_one_sentence(str(err.value))


@pytest.mark.parametrize("code", ["qqq", "xx!", ""])
def test_nothing_close_still_names_real_codes(code):
    with pytest.raises(UlmfitError) as err:
        get_lang(code)
    assert "the languages with an adapter of their own are ar, bg, bn, de, en" in str(err.value)
    assert f"lists all {len(WIKIPEDIAS)}" in str(err.value)
