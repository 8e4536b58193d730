"""Russian: spaCy's rule-based tokenizer."""
from ulmfit.langs.base import Language

LANG = Language(
    code="ru",
    name="Russian",
    disambiguation=("неоднозначность", "многозначность"),
)
