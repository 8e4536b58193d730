"""Word tokenizers, script normalisers and the Unicode case rules."""
from __future__ import annotations

import pickle
import unicodedata

import fastai.text.core as fastai_text
import pytest

from ulmfit.errors import UlmfitError
from ulmfit.langs import ADAPTERS, get_lang, rules
from ulmfit.langs.tokenizers import make_word_tokenizer

# One sentence per language and the words it must give.
CASES = {
    "en": ("Don't worry, the U.K. government isn't closing St. Mary's school.",
           ["Do", "n't", "worry", ",", "the", "U.K.", "government", "is", "n't", "closing", "St.", "Mary", "'s",
            "school", "."]),
    "de": ("Das Haus steht z.B. am Rhein, oder?",
           ["Das", "Haus", "steht", "z.B.", "am", "Rhein", ",", "oder", "?"]),
    "fr": ("L'école d'été n'a pas ouvert aujourd'hui.",
           ["L'", "école", "d'", "été", "n'", "a", "pas", "ouvert", "aujourd'hui", "."]),
    "es": ("¿Dónde está el Sr. García? ¡En Madrid!",
           ["¿", "Dónde", "está", "el", "Sr.", "García", "?", "¡", "En", "Madrid", "!"]),
    "it": ("L'amico dell'uomo è arrivato all'una.",
           ["L'", "amico", "dell'", "uomo", "è", "arrivato", "all'", "una", "."]),
    "nl": ("Het is 's avonds koud in Amsterdam, zei hij.",
           ["Het", "is", "'s", "avonds", "koud", "in", "Amsterdam", ",", "zei", "hij", "."]),
    "pl": ("Kraków leży nad Wisłą.", ["Kraków", "leży", "nad", "Wisłą", "."]),
    "ru": ("Москва — столица России, т.е. крупнейший город.",
           ["Москва", "—", "столица", "России", ",", "т.е.", "крупнейший", "город", "."]),
    "uk": ("Він сказав: «Привіт!»", ["Він", "сказав", ":", "«", "Привіт", "!", "»"]),
    "bg": ("Той каза: „Здравей!“", ["Той", "каза", ":", "„", "Здравей", "!", "“"]),
    "vi": ("Hà Nội là thủ đô của Việt Nam, phải không?",
           ["Hà", "Nội", "là", "thủ", "đô", "của", "Việt", "Nam", ",", "phải", "không", "?"]),
    "ko": ("서울은 한국의 수도입니다. 정말요?", ["서울은", "한국의", "수도입니다", ".", "정말요", "?"]),
    "ar": ("هل تتكلم العربية؟", ["هل", "تتكلم", "العربية", "؟"]),
    "hi": ("नई दिल्ली भारत की राजधानी है।", ["नई", "दिल्ली", "भारत", "की", "राजधानी", "है", "।"]),
    "bn": ("আমি ভাত খাই।", ["আমি", "ভাত", "খাই", "।"]),
    "mr": ("मुंबई ही महाराष्ट्राची राजधानी आहे.", ["मुंबई", "ही", "महाराष्ट्राची", "राजधानी", "आहे", "."]),
    "th": ("แมวนอนบนโต๊ะ", ["แมว", "นอน", "บน", "โต๊ะ"]),
    "zh": ("我们明天去上海看朋友。", ["我们", "明天", "去", "上海", "看", "朋友", "。"]),
}
WORD_LEVEL = [code for code in ADAPTERS if get_lang(code).word_tokenizer is not None]
SPECIAL = fastai_text.defaults.text_spec_tok


@pytest.fixture(scope="module")
def tokenizer():
    """Build each language's tokenizer once for the module (spaCy's French rules take seconds to compile)."""
    built = {}

    def get(code):
        if code not in built:
            built[code] = make_word_tokenizer(get_lang(code))
        return built[code]

    return get


def test_every_word_level_language_has_a_case():
    assert set(CASES) == set(WORD_LEVEL)


@pytest.mark.parametrize("code", WORD_LEVEL)
def test_words(tokenizer, code):
    text, words = CASES[code]
    assert list(tokenizer(code)([text])) == [words]


@pytest.mark.parametrize("code", WORD_LEVEL)
def test_special_tokens_stay_whole(tokenizer, code):
    word = max(CASES[code][1], key=len)
    text = f"xxbos xxmaj {word} xxrep 4 ! xxwrep 3 {word} xxup {word} xxunk xxpad xxfld xxeos"
    (tokens,) = tokenizer(code)([text])
    assert [t for t in tokens if t in SPECIAL] == ["xxbos", "xxmaj", "xxrep", "xxwrep", "xxup", "xxunk", "xxpad",
                                                   "xxfld", "xxeos"]
    assert word in tokens


@pytest.mark.parametrize("code", ["en", "vi", "ko", "th", "zh"])
def test_tokenizer_pickles(tokenizer, code):
    text, words = CASES[code]
    copy = pickle.loads(pickle.dumps(tokenizer(code)))
    assert list(copy([text, text])) == [words, words]


def test_whitespace_kept_where_words_are_joined_without_spaces(tokenizer):
    # Thai and Chinese tokens are joined with "" to give the text back, so spaces must be tokens.
    for code, text in [("th", "แมวนอน บนโต๊ะ"), ("zh", "我们 明天")]:
        (tokens,) = tokenizer(code)([text])
        assert "".join(tokens) == text and " " in tokens


def test_japanese_has_no_word_tokenizer():
    with pytest.raises(UlmfitError, match="--tokenizer sentencepiece") as err:
        make_word_tokenizer(get_lang("ja"))
    message = str(err.value)
    assert "\n" not in message and message.count(". ") == 0 and message.endswith(".")


@pytest.mark.parametrize(
    "code, text, expected",
    [
        ("th", "\ufeffสวัสดี\u200bครับ\u200c\u200d", "สวัสดีครับ"),
        ("th", "เเปลก นานาาา", "แปลก นานา"),  # two sara e are one sara ae; a doubled vowel is a typing slip
        ("zh", "ＡＢＣ１２３，你好！\u3000世界", "ABC123,你好! 世界"),
        ("ja", "ﾃｽﾄ１２３ＡＢＣ", "テスト123ABC"),
        ("ar", "عـــربي", "عربي"),
        ("vi", unicodedata.normalize("NFD", "Việt Nam"), "Việt Nam"),
    ],
)
def test_normalize(code, text, expected):
    result = get_lang(code).normalize(text)
    assert result == expected
    assert unicodedata.is_normalized("NFC", result)


@pytest.mark.parametrize(
    "rule, text, expected",
    [
        ("replace_maj", "Москва", "xxmaj москва"),
        ("replace_maj", "Übel", "xxmaj übel"),
        ("replace_maj", "in Paris", "in xxmaj paris"),
        ("replace_all_caps", "ÉTAT", "xxup état"),
        ("replace_all_caps", "the NATO summit", "the xxup nato summit"),
    ],
)
def test_case_rules_cover_every_cased_script(rule, text, expected):
    assert getattr(rules, rule)(text) == expected
    ascii_only = all(c.isascii() for c in text)
    # fastai's own rules only see [A-Z]: that is why ours exist.
    assert (getattr(fastai_text, rule)(text) == expected) == ascii_only


# Texts where spaCy's whitespace handling and its special cases are at their least regular.
HOSTILE = ["", " ", "  ", "\n", " lead", "  two lead", "trail ", "trail  ", "a  b", "a   b", "a \n b", "a\n\nb",
           "a\t \tb", "a\xa0b", "\xa0a", "a \xa0 b", "xxmaj word xxup caps\nxxbos", "e.g. (e.g.) «quoted»",
           "http://example.com/a?b=c, www.x.org.", ":) :-) C++ 1.5km 3-4", "U.S.A. St. Mary's", "a\u2003b\u3000c"]


def _spacy_itself(tok, texts):
    return [[t.text for t in tok.nlp.tokenizer(text)] for text in texts]


def _wikipedia_texts(dump, n_pages=12, max_chars=25_000):
    from ulmfit.pretrain.dump import DumpReader

    texts = []
    for page in DumpReader(dump):
        if page.ns == 0 and not page.redirect:
            texts.append(page.text[:max_chars])
        if len(texts) == n_pages:
            return texts
    return texts


@pytest.mark.parametrize("code, dump", [
    ("en", "en/wikipedia_xml/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"),
    ("bg", "bg/wikipedia_xml/bgwiki-latest-pages-articles-shortened.xml.bz2"),
    ("bn", "bn/wikipedia_xml/bnwiki-truncated-100k.xml.xz"),
    ("mr", "mr/wikipedia_xml/mrwiki-truncated-100k.xml.xz"),
    ("uk", "uk/wikipedia_xml/ukwiki-truncated-100k.xml.xz"),
    ("vi", "vi/wikipedia_xml/viwiki-truncated-100k.xml.xz"),
])
def test_spacy_tokens_by_chunk_are_spacys(tokenizer, shared_data, code, dump):
    """The chunk memo gives exactly spaCy's tokens: on raw wikitext (every markup character there is), on the same
    text after the word rules (xxmaj, xxup, spaced slashes), and on hand-made whitespace and special cases."""
    from ulmfit.langs.rules import default_rules, make_preprocessor

    lang = get_lang(code)
    raw = _wikipedia_texts(shared_data / dump)
    preprocess = make_preprocessor(lang, default_rules(lang, "word"))
    texts = raw + [preprocess(t) for t in raw] + HOSTILE
    tok = tokenizer(code)
    assert list(tok(texts)) == _spacy_itself(tok, texts)
    assert len(tok._memo) > 1000  # the texts did go through the memo


@pytest.mark.parametrize("code, text", [
    ("es", "Los EE. UU. y el Sr. García, EE. UU."),  # one token spanning a space
    ("ru", "Это так в н.в. и т.д."),
    ("ar", "في عام 500 ب. م كان"),
    ("en", "In [[Dares Phrygius]]' ''Account of the Destruction''"),  # three quotes in the text, two alone
])
def test_special_cases_matched_across_chunks_are_spacys(tokenizer, code, text):
    tok = tokenizer(code)
    alone = [w for chunk in text.split() for w in _spacy_itself(tok, [chunk])[0]]
    (tokens,) = tok([text])
    assert tokens == _spacy_itself(tok, [text])[0] != alone


def test_memo_starting_afresh_changes_nothing(monkeypatch, shared_data):
    tok = make_word_tokenizer(get_lang("uk"))
    texts = _wikipedia_texts(shared_data / "uk/wikipedia_xml/ukwiki-truncated-100k.xml.xz", n_pages=6)
    monkeypatch.setattr(tok, "MEMO_SIZE", 300)
    out = [toks for i in range(0, len(texts), 2) for toks in tok(texts[i:i + 2])]
    assert out == _spacy_itself(tok, texts)
    assert len(tok._memo) < sum(map(len, out))
