"""Hindi: spaCy's rule-based tokenizer. The Devanagari script has no case."""
from ulmfit.langs.base import Language

LANG = Language(
    code="hi",
    name="Hindi",
    has_case=False,
    disambiguation=("बहुविकल्पी",),
)
