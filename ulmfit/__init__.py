"""ulmfit: multilingual ULMFiT — pretrain AWD-LSTM language models from Wikipedia, a model zoo, benchmark tables."""
from __future__ import annotations

__version__ = "0.1.0"

from ulmfit.errors import UlmfitError
from ulmfit.langs import Language, get_lang, list_langs

__all__ = ["Language", "PrepareOptions", "UlmfitError", "__version__", "from_pretrained", "get_lang", "list_langs",
           "list_models", "model_info", "prepare_corpus"]


def __getattr__(name: str):
    # These import fastai (and so torch): load them on first use, not on `import ulmfit`.
    if name in ("prepare_corpus", "PrepareOptions"):
        from ulmfit.pretrain import corpus

        return getattr(corpus, name)
    if name == "from_pretrained":
        from ulmfit.zoo.pretrained import from_pretrained

        return from_pretrained
    if name == "list_models":
        from ulmfit.zoo.catalogue import list_models

        return list_models
    if name == "model_info":
        from ulmfit.zoo.catalogue import get_entry

        return get_entry
    raise AttributeError(f"module 'ulmfit' has no attribute {name!r}")
