"""Korean: spaCy's own Korean tokenizer needs mecab-ko; its rule-based tokenizer needs nothing and splits
punctuation off the space-separated eojeol (word + particles), which is the word level here."""
from ulmfit.langs.base import Language

LANG = Language(
    code="ko",
    name="Korean",
    has_case=False,
    sp_coverage=0.9995,
    disambiguation=("동음이의",),
    spacy_config={"nlp": {"tokenizer": {"@tokenizers": "spacy.Tokenizer.v1"}}},
)
