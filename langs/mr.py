"""Marathi: spaCy's rule-based tokenizer. The Devanagari script has no case."""
from ulmfit.langs.base import Language

LANG = Language(
    code="mr",
    name="Marathi",
    has_case=False,
    disambiguation=("निःसंदिग्धीकरण",),
)
