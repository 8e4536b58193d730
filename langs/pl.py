"""Polish: spaCy's rule-based tokenizer."""
from ulmfit.langs.base import Language

LANG = Language(
    code="pl",
    name="Polish",
    disambiguation=("ujednoznacznienie",),
)
