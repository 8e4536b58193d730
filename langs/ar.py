"""Arabic: spaCy's rule-based tokenizer. The script has no case."""
from ulmfit.langs.base import Language


def normalize(text: str) -> str:
    """Remove tatweel (U+0640), the stretching stroke used for justification, which splits one word into many
    spellings."""
    return text.replace("\u0640", "")


LANG = Language(
    code="ar",
    name="Arabic",
    has_case=False,
    disambiguation=("توضيح",),
    normalize=normalize,
)
