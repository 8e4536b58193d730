"""German: spaCy's rule-based tokenizer."""
from ulmfit.langs.base import Language

LANG = Language(
    code="de",
    name="German",
    disambiguation=("begriffsklärung",),
)
