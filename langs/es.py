"""Spanish: spaCy's rule-based tokenizer."""
from ulmfit.langs.base import Language

LANG = Language(
    code="es",
    name="Spanish",
    disambiguation=("desambiguación", "desambig"),
)
