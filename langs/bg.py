"""Bulgarian: spaCy's rule-based tokenizer."""
from ulmfit.langs.base import Language

LANG = Language(
    code="bg",
    name="Bulgarian",
    disambiguation=("пояснение",),
)
