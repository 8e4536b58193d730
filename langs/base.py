"""What a language adapter declares: the facts about one Wikipedia language that the pipeline needs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

# A word tokenizer takes a batch of texts and yields one list of tokens per text (fastai's tokenizer protocol).
WordTokenizer = Callable[[Iterable[str]], Iterator[list[str]]]

DUMPS_URL = "https://dumps.wikimedia.org"
HF_WIKIPEDIA = "wikimedia/wikipedia"
HF_WIKIPEDIA_DATE = "20231101"


@dataclass(frozen=True)
class Language:
    """One Wikipedia language.

    `word_tokenizer` names the segmenter of the word-level path: "spacy" (`spacy.blank(code)`), "pythainlp"
    (newmm), "jieba", or None where the language is SentencePiece-only. `has_case` turns the xxmaj/xxup rules
    on. `word_joiner` is what goes between word tokens when they are turned back into text ("" for scripts
    written without spaces between words). `disambiguation` lists lower-case template names that mark a
    disambiguation page in this Wikipedia, beyond the generic ones every reader knows.
    """

    code: str
    name: str
    word_tokenizer: str | None = "spacy"
    has_case: bool = True
    sp_coverage: float = 0.9999
    word_joiner: str = " "
    disambiguation: tuple[str, ...] = ()
    normalize: Callable[[str], str] | None = None
    spacy_config: dict = field(default_factory=dict)
    generic: bool = False

    @property
    def wiki(self) -> str:
        """The database name of this language's Wikipedia, e.g. `viwiki` (dashes become underscores)."""
        return self.code.replace("-", "_") + "wiki"

    @property
    def hf_config(self) -> str:
        """The configuration of the `wikimedia/wikipedia` dataset on the Hugging Face Hub for this language."""
        return f"{HF_WIKIPEDIA_DATE}.{self.code}"

    def dump_url(self, date: str = "latest", base: str = DUMPS_URL) -> str:
        """URL of the `pages-articles-multistream` dump on dumps.wikimedia.org (or a mirror at `base`): the same
        articles as `pages-articles`, in bz2 streams of 100 pages that workers can decompress in parallel."""
        return f"{base.rstrip('/')}/{self.wiki}/{date}/{self.wiki}-{date}-pages-articles-multistream.xml.bz2"

    def checksums_url(self, date: str = "latest", base: str = DUMPS_URL) -> str:
        """URL of the sha1 sums file published next to the dump."""
        return f"{base.rstrip('/')}/{self.wiki}/{date}/{self.wiki}-{date}-sha1sums.txt"
