"""Reading the files of older checkpoints without running code they might carry.

Pickles: weights go through `torch.load(weights_only=True)`. What `learn.save()` of fastai v1 and v2 wrote beside
the weights, the optimizer state, also holds numpy scalars, dtypes and arrays, names the optimizer's class
(`functools.partial(torch.optim.Adam, ...)`, fastai v1) or keeps its hyper-parameters in fastcore's `L` (v2).
Numpy's types are added to torch's allow-list (`torch.serialization.safe_globals`) as torch's documentation
suggests; an optimizer class, `functools.partial` or `L` is replaced by an inert stand-in that is built from the
pickle's arguments without calling anything, and the optimizer state is then dropped. Any other global is refused unless `allow_pickle=True`, which warns and then loads
the file with full pickle. Vocabulary pickles go through an unpickler that loads no classes at all, so a pickle that
would run code is refused. Downloads are never loaded with `allow_pickle`.
"""
from __future__ import annotations

import json
import logging
import pickle
import re
from pathlib import Path

import torch

from ulmfit.errors import UlmfitError

log = logging.getLogger(__name__)

_UNSUPPORTED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


class _Refused(pickle.UnpicklingError):
    pass


class _NoClassesUnpickler(pickle.Unpickler):
    """Unpickles plain data (lists, strings, numbers) and refuses every class or function a pickle names."""

    def find_class(self, module: str, name: str):
        raise _Refused(f"{module}.{name}")


def read_itos(path: Path) -> list[str]:
    """A legacy vocabulary: a JSON list, or a pickled list of strings read without loading any class."""
    try:
        if path.suffix == ".json":
            itos = json.loads(path.read_text(encoding="utf-8"))
        else:
            with open(path, "rb") as f:
                itos = _NoClassesUnpickler(f).load()
    except _Refused as e:
        raise UlmfitError(f"{path} is not a plain list of tokens: it asks to load {e}, which could run code, so it "
                          "was refused; save the vocabulary as a JSON list of strings and convert that.") from None
    except (OSError, ValueError, EOFError, pickle.UnpicklingError, UnicodeDecodeError) as e:
        raise UlmfitError(f"{path} is not a readable vocabulary ({type(e).__name__}: {e}); it may be truncated or "
                          "corrupt, so download it again.") from None
    if not isinstance(itos, (list, tuple)) or not itos or not all(isinstance(t, str) for t in itos):
        raise UlmfitError(f"{path} is not a vocabulary: it must hold a non-empty list of strings.")
    return list(itos)


class _Dropped:
    """Stands in for what an optimizer state names (its optimizer class, `functools.partial`): built from the
    pickle's arguments without calling the real thing, and thrown away with the optimizer state."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        pass


def _numpy_globals() -> list:
    """Numpy's scalar, dtype and array types under the names old and new numpy pickle them by."""
    import numpy as np
    import numpy.dtypes

    scalar = np._core.multiarray.scalar  # noqa: SLF001 - what numpy pickles scalars with
    reconstruct = np._core.multiarray._reconstruct  # noqa: SLF001 - and arrays
    named = [(scalar, f"{module}.multiarray.scalar") for module in ("numpy.core", "numpy._core")]
    named += [(reconstruct, f"{module}.multiarray._reconstruct") for module in ("numpy.core", "numpy._core")]
    dtypes = [getattr(numpy.dtypes, n) for n in dir(numpy.dtypes) if n.endswith("DType")]
    return [*named, np.dtype, np.ndarray, *dtypes]


def _droppable(name: str) -> bool:
    """Globals that only an optimizer state names: its class, the partial that fastai v1 wrapped it in, and the
    list class (fastcore's `L`) that fastai v2 keeps its hyper-parameters in."""
    return name in ("functools.partial", "fastcore.foundation.L") or name.startswith("torch.optim.")


def load_state_dict(path: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    """The tensors of a legacy weights file (a state dict, possibly with its optimizer, or a whole module)."""
    allowed = _numpy_globals()
    dropped: list[str] = []
    while True:
        try:
            with torch.serialization.safe_globals(allowed):
                state = torch.load(path, map_location="cpu", weights_only=True)
            break
        except pickle.UnpicklingError as e:
            if "Weights only load failed" not in str(e):
                raise _unreadable(path, e) from None
            needs = _UNSUPPORTED_GLOBAL.search(str(e))
            if needs and _droppable(needs[1]) and needs[1] not in dropped:
                dropped.append(needs[1])
                allowed.append((_Dropped, needs[1]))
                continue
            if not allow_pickle:
                raise UlmfitError(f"{path} needs arbitrary Python objects{f' ({needs[1]})' if needs else ''} to "
                                  "load, which can run code; if you trust where it came from, convert it with "
                                  "--allow-pickle.") from None
            state = _load_with_pickle(path)
            break
        except Exception as e:  # noqa: BLE001 - a truncated or foreign file raises anything from KeyError to OSError
            raise _unreadable(path, e) from None
    if dropped:
        log.info("%s: its optimizer state names %s; it was read without them and dropped", path.name,
                 ", ".join(dropped))
    while isinstance(state, dict) and isinstance(state.get("model"), (dict, torch.nn.Module)):
        state = state["model"]  # saved with its optimizer: {"model": ..., "opt": ...}
    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UlmfitError(f"{path} does not hold a model state dict (a mapping of names to tensors).")
    return dict(state)


def _load_with_pickle(path: Path):
    log.warning("loading %s with full pickle (allow_pickle): this runs whatever code the file holds, so do it "
                "only with files you trust", path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (ImportError, AttributeError) as e:
        raise UlmfitError(f"{path} needs Python code that is not installed to load ({e}).") from None
    except Exception as e:  # noqa: BLE001 - whatever a broken pickle raises
        raise _unreadable(path, e) from None


def _unreadable(path: Path, e: BaseException) -> UlmfitError:
    return UlmfitError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {str(e)[:200]}); it may "
                       "be truncated or corrupt, so download it again.")
