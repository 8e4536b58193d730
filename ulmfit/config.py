"""Training configurations: the optimiser settings pretraining and fine-tuning share, and the pretraining config
(the AWD-LSTM architecture and the recipe), each one flat set of keys.

Named configs (`tiny`, `small`, `paper`) or a YAML file, with any key overridable (`--set lr=3e-3`). The
architecture keys are those of fastai's `awd_lstm_lm_config`; dropouts are multiplied by `drop_mult` as fastai
does.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ulmfit.errors import UlmfitError

ARCH_KEYS = ("emb_sz", "n_hid", "n_layers", "pad_token", "bidir", "output_p", "hidden_p", "input_p", "embed_p",
             "weight_p", "tie_weights", "out_bias")
PRECISIONS = ("auto", "bf16", "fp16", "no")


@dataclass
class OptimSettings:
    """What every ULMFiT training stage sets the same way: AdamW with fastai's cycling momentum, AR/TAR,
    gradient clipping (0: none), mixed precision on GPU and the seed."""

    moms: tuple[float, float, float] = (0.8, 0.7, 0.8)
    adam_beta2: float = 0.99
    wd: float = 0.1
    clip: float = 0.1
    alpha: float = 2.0
    beta: float = 1.0
    mixed_precision: str = "auto"  # auto (bf16 where the GPU has it, else fp16), bf16, fp16, no
    seed: int = 42

    def __post_init__(self) -> None:
        if self.mixed_precision not in PRECISIONS:
            raise UlmfitError(f"mixed_precision must be {', '.join(PRECISIONS)}, not '{self.mixed_precision}'.")
        check_range(self, ["moms"], 0, 1)
        check_range(self, ["adam_beta2"], 0, 1, below=True)
        check_range(self, ["wd", "clip", "alpha", "beta"], 0)

    def to_dict(self) -> dict:
        return config_dict(self)


@dataclass
class PretrainConfig(OptimSettings):
    # architecture (fastai's awd_lstm_lm_config defaults are the `paper` config)
    emb_sz: int = 400
    n_hid: int = 1152
    n_layers: int = 3
    pad_token: int = 1
    bidir: bool = False
    output_p: float = 0.1
    hidden_p: float = 0.15
    input_p: float = 0.25
    embed_p: float = 0.02
    weight_p: float = 0.2
    tie_weights: bool = True
    out_bias: bool = True
    drop_mult: float = 1.0
    # data
    bs: int = 64
    bptt: int = 70
    variable_bptt: bool = True
    # one-cycle schedule
    epochs: int = 10
    lr: float = 3e-3
    pct_start: float = 0.25

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, ["emb_sz", "n_hid", "n_layers", "bs", "bptt", "epochs"], 1)
        check_range(self, ["output_p", "hidden_p", "input_p", "embed_p", "weight_p"], 0, 1, below=True)
        check_range(self, ["drop_mult"], 0)
        check_range(self, ["lr"], 0, above=True)
        check_range(self, ["pct_start"], 0, 1)

    def arch(self) -> dict:
        """The `config` argument of fastai's `get_language_model`."""
        return {k: getattr(self, k) for k in ARCH_KEYS}


def check_range(config: Any, names: list[str], low: float, high: float | None = None, *, above: bool = False,
                below: bool = False) -> None:
    """Refuse a config whose keys (numbers, or tuples of numbers) fall outside [low, high]; `above` and `below`
    leave the ends out."""
    for name in names:
        value = getattr(config, name)
        for v in value if isinstance(value, tuple) else (value,):
            if v < low or (above and v == low) or (high is not None and (v > high or (below and v == high))):
                start = f"{'above' if above else 'at least'} {low}"
                bounds = (start if high is None else f"{start} and below {high}" if below else
                          f"{start} and at most {high}")
                raise UlmfitError(f"config key '{name}' must be {bounds}, not {value!r}.")


def config_dict(config: Any) -> dict:
    """A config dataclass as plain JSON values (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


CONFIGS: dict[str, dict[str, Any]] = {
    "tiny": dict(emb_sz=64, n_hid=128, n_layers=2, bs=32, bptt=35, epochs=1, lr=1e-2),
    "small": dict(emb_sz=256, n_hid=768, n_layers=3, bs=64, bptt=70, epochs=5, lr=5e-3),
    "paper": dict(),
}


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Bring a value from YAML or the command line to the type of the key's default."""
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() in ("true", "yes", "1", "on"):
                    return True
                if value.lower() in ("false", "no", "0", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(default, tuple):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(type(default[0])(v) for v in items)
        return type(default)(value)
    except (TypeError, ValueError):
        raise UlmfitError(f"config key '{name}' takes a {type(default).__name__}, not {value!r}.") from None


def load_config(name: str | Path = "tiny", overrides: dict[str, Any] | list[str] | None = None, *,
                kind: type = PretrainConfig, presets: dict[str, dict[str, Any]] | None = None) -> Any:
    """A named config or a YAML file, then `overrides` (a dict, or `key=value` strings from the command line).

    `kind` is the config dataclass and `presets` its named configs (default: pretraining's `PretrainConfig` and
    `CONFIGS`; fine-tuning passes its own).
    """
    presets = CONFIGS if presets is None else presets
    values: dict[str, Any] = {}
    if str(name) in presets:
        values.update(presets[str(name)])
    elif Path(name).suffix in (".yaml", ".yml", ".json"):
        import yaml

        path = Path(name)
        if not path.is_file():
            raise UlmfitError(f"config file {path} does not exist.")
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise UlmfitError(f"config file {path} must hold a mapping of keys to values.")
        base = str(loaded.pop("base", "paper"))  # a file may start from a named config
        if base not in presets:
            raise UlmfitError(f"config file {path} names an unknown base '{base}'; use one of {', '.join(presets)}.")
        values.update(presets[base])
        values.update(loaded)
    else:
        raise UlmfitError(f"unknown config '{name}'; use one of {', '.join(presets)} or a .yaml file.")
    if isinstance(overrides, list):
        pairs = {}
        for item in overrides:
            if "=" not in item:
                raise UlmfitError(f"--set takes key=value, not '{item}'.")
            key, value = item.split("=", 1)
            pairs[key.strip()] = value.strip()
        overrides = pairs
    values.update(overrides or {})
    defaults = {f.name: f.default for f in fields(kind)}
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        import difflib

        hints = [f"{k} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(k, defaults, n=1)) else k
                 for k in unknown]
        raise UlmfitError(f"unknown config key(s): {', '.join(hints)}.")
    return kind(**{k: _coerce(k, v, defaults[k]) for k, v in values.items()})
