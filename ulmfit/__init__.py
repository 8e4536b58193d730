"""ulmfit: multilingual ULMFiT — pretrain AWD-LSTM language models from Wikipedia, a model zoo, benchmark tables."""
from __future__ import annotations

__version__ = "0.1.0"

from ulmfit.errors import UlmfitError
from ulmfit.langs import Language, get_lang, list_langs

__all__ = ["Language", "PrepareOptions", "UlmfitError", "__version__", "get_lang", "list_langs", "prepare_corpus"]


def __getattr__(name: str):
    # The pipeline imports fastai (and so torch): load it on first use, not on `import ulmfit`.
    if name in ("prepare_corpus", "PrepareOptions"):
        from ulmfit.pretrain import corpus

        return getattr(corpus, name)
    raise AttributeError(f"module 'ulmfit' has no attribute {name!r}")
