"""ulmfit: multilingual ULMFiT — pretrain AWD-LSTM language models from Wikipedia, a model zoo, benchmark tables."""
from __future__ import annotations

__version__ = "0.1.0"

import warnings

# fastai decorates a few functions with `torch.jit.script`, which torch deprecates; the warning speaks to fastai's
# authors, not to users, so it is hidden (this message from torch's jit module only).
for _category in (DeprecationWarning, FutureWarning):
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is (deprecated|not supported)", category=_category,
                            module=r"torch\.jit\._script")
del _category
# fastai.text imports fastai.tabular, which sets a pandas option that pandas 3 deprecates.
warnings.filterwarnings("ignore", message=r"The 'mode\.chained_assignment' option is deprecated",
                        module=r"fastai\.tabular\.core")

from ulmfit.errors import UlmfitError
from ulmfit.langs import Language, get_lang, list_langs

__all__ = ["Classifier", "Language", "PrepareOptions", "UlmfitError", "__version__", "finetune", "from_pretrained",
           "get_lang", "get_task", "list_langs", "list_models", "list_tasks", "model_info", "prepare_corpus"]

# Names that import fastai (and so torch): loaded on first use, not on `import ulmfit`.
_LAZY = {
    "prepare_corpus": ("ulmfit.pretrain.prepare", "prepare_corpus"),
    "PrepareOptions": ("ulmfit.pretrain.prepare", "PrepareOptions"),
    "list_models": ("ulmfit.zoo.catalogue", "list_models"),
    "model_info": ("ulmfit.zoo.catalogue", "get_entry"),
    "finetune": ("ulmfit.benchmarks.finetune", "finetune"),
    "Classifier": ("ulmfit.benchmarks.classifier", "Classifier"),
    "get_task": ("ulmfit.benchmarks.tasks", "get_task"),
    "list_tasks": ("ulmfit.benchmarks.tasks", "list_tasks"),
}


def from_pretrained(spec, *, direction: str = "fwd", revision: str | None = None, cache_dir=None,
                    force_download: bool = False, token: str | bool | None = None, local_files_only: bool = False,
                    device="cpu"):
    """A pretrained model from a local directory, a catalogue name, `hf-hub:ORG/NAME` or a bare `ORG/NAME` on the Hub:
    a language model (`PretrainedLM`, one `direction`, or the pair with "both"), or a `Classifier` when the spec
    names a classifier. `revision`, `cache_dir`, `force_download`, `token` and `local_files_only` are
    huggingface_hub's. `ulmfit.zoo.pretrained.from_pretrained` and `Classifier.from_pretrained` load one kind only.
    """
    from ulmfit.zoo.pretrained import load_language_model, open_model

    model = open_model(spec, revision=revision, cache_dir=cache_dir, force_download=force_download, token=token,
                       local_files_only=local_files_only)
    if not model.is_classifier:
        return load_language_model(model, direction, device)
    if direction != "fwd":
        raise UlmfitError(f"{spec} is a classifier, which loads all of its directions; leave out direction.")
    from ulmfit.benchmarks.classifier import Classifier

    return Classifier.from_model_dir(model, device)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'ulmfit' has no attribute {name!r}")
