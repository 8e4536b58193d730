"""Italian: spaCy's rule-based tokenizer (elisions such as "l'" are split off)."""
from ulmfit.langs.base import Language

LANG = Language(
    code="it",
    name="Italian",
    disambiguation=("disambigua",),
)
