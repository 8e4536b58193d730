"""Dutch: spaCy's rule-based tokenizer."""
from ulmfit.langs.base import Language

LANG = Language(
    code="nl",
    name="Dutch",
    disambiguation=("dp", "dpintro", "doorverwijspagina"),
)
