"""Tiny MediaWiki dumps written for this project, one per language, for `ulmfit prepare --sample`.

Each `{code}wiki-sample.xml` is a `pages-articles`-style export (format 0.10) with original text, not copied
from Wikipedia: six real articles, one redirect, one disambiguation page, one stub, and one page each in the
template, category and talk namespaces. They let the whole pipeline run offline in seconds.
"""

from __future__ import annotations

import pathlib
from importlib.resources import files

from ulmfit.errors import UlmfitError

SAMPLE_LANGS: tuple[str, ...] = ("en", "de", "fr", "vi", "th", "zh", "ja", "ru")


def sample_dump(code: str) -> pathlib.Path:
    """Return the path of the bundled sample dump for language `code` (e.g. "vi")."""
    if code not in SAMPLE_LANGS:
        raise UlmfitError(
            f"There is no sample dump for language {code!r}; choose one of: {', '.join(SAMPLE_LANGS)}."
        )
    path = pathlib.Path(str(files(__package__) / f"{code}wiki-sample.xml"))
    if not path.is_file():
        raise UlmfitError(f"The sample dump {path} is missing; reinstall the ulmfit package.")
    return path
