"""Ukrainian: spaCy's rule-based tokenizer."""
from ulmfit.langs.base import Language

LANG = Language(
    code="uk",
    name="Ukrainian",
    disambiguation=("неоднозначність",),
)
