"""French: spaCy's rule-based tokenizer (elided articles such as "l'" are split off)."""
from ulmfit.langs.base import Language

LANG = Language(
    code="fr",
    name="French",
    disambiguation=("homonymie", "patronymie", "bandeau standard pour page d'homonymie"),
)
