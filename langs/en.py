"""English: spaCy's rule-based tokenizer (contractions such as "don't" become "do" + "n't")."""
from ulmfit.langs.base import Language

LANG = Language(
    code="en",
    name="English",
    disambiguation=(
        "disambiguation", "disambig", "dab", "disamb",
        "hndis", "human name disambiguation", "geodis", "place name disambiguation",
        "numberdis", "number disambiguation", "mathdab", "chinese title disambiguation",
        "school disambiguation", "hospital disambiguation", "airport disambiguation",
    ),
)
