"""The model directory (DESIGN.md): what `ulmfit pretrain` writes and every later step reads.

`config.json` (architecture, language, tokenizer spec, corpus, training recipe), the tokenizer file (`spm.model`
or `vocab.json`), `fwd/model.safetensors` and `bwd/model.safetensors` with fastai's state-dict key names, and a
`README.md` model card. Weights go through safetensors' `save_model`/`load_model`, which store the tied
embedding/decoder matrix once.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from ulmfit import __version__
from ulmfit.errors import UlmfitError
from ulmfit.files import write_json

FORMAT = "ulmfit-model"
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
DIRECTIONS = ("fwd", "bwd")


def build_language_model(config: dict) -> torch.nn.Module:
    """fastai's AWD-LSTM language model (`get_language_model`) for a model directory's config."""
    from fastai.text.models.awdlstm import AWD_LSTM
    from fastai.text.models.core import get_language_model

    return get_language_model(AWD_LSTM, config["vocab_size"], config=dict(config["arch"]),
                              drop_mult=config.get("drop_mult", 1.0))


def read_config(model_dir: Path | str) -> dict:
    path = Path(model_dir) / CONFIG
    if not path.is_file():
        raise UlmfitError(f"{model_dir} is not a ulmfit model directory: it has no {CONFIG}.")
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("format") != FORMAT:
        raise UlmfitError(f"{path} is not a ulmfit model config (format {config.get('format')!r}).")
    return config


def write_config(model_dir: Path, config: dict) -> None:
    write_json(model_dir / CONFIG, config | {"ulmfit_version": __version__})


def save_weights(model: torch.nn.Module, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_model(model, str(tmp), metadata={"format": "pt", "library": "ulmfit"})
    tmp.replace(path)


def load_language_model(model_dir: Path | str, direction: str = "fwd",
                        device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """The language model of one direction, in eval mode, and the directory's config."""
    config = read_config(model_dir)
    if direction not in DIRECTIONS:
        raise UlmfitError(f"direction must be 'fwd' or 'bwd', not '{direction}'.")
    path = Path(model_dir) / direction / WEIGHTS
    if not path.is_file():
        have = [d for d in DIRECTIONS if (Path(model_dir) / d / WEIGHTS).is_file()]
        raise UlmfitError(f"{model_dir} has no {direction} model (it has: {', '.join(have) or 'none'}).")
    model = build_language_model(config)
    load_model(model, str(path), device=str(device))
    return model.to(device).eval(), config
