"""Bengali: spaCy's rule-based tokenizer. The Bengali script has no case."""
from ulmfit.langs.base import Language

LANG = Language(
    code="bn",
    name="Bengali",
    has_case=False,
    disambiguation=("দ্ব্যর্থতা নিরসন",),
)
