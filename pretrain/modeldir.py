"""The model directory (DESIGN.md): what `ulmfit pretrain`, `convert`, `remap` and `finetune` write and every later
step reads. This module alone reads, validates and writes it.

    config.json              format (ulmfit-model, or ulmfit-classifier for a classifier), language, tokenizer
                             spec, architecture, directions, corpus or task, recipe, metrics
    spm.model | vocab.json   the tokenizer
    fwd/model.safetensors    fastai state-dict key names (get_language_model, or get_text_classifier)
    bwd/model.safetensors
    labels.json              a classifier's labels, in the order of its probability columns
    metrics.json             per-epoch figures
    README.md                the model card

`config.json` is written last: a folder without it is not a finished model. Weights go through safetensors'
`save_model`/`load_model`, which store the tied embedding/decoder matrix once.
"""
from __future__ import annotations

import shutil
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from ulmfit import __version__
from ulmfit.config import PretrainConfig
from ulmfit.errors import UlmfitError
from ulmfit.files import atomic_write_text, file_digest, read_json, write_json
from ulmfit.langs import get_lang
from ulmfit.pretrain.tokenizer import SP_MODEL, SPECIAL_TOKENS, WORD_VOCAB, TextTokenizer, write_word_vocab

if TYPE_CHECKING:  # torch is imported by what builds or loads a model, not by reading a config
    import torch

FORMAT = "ulmfit-model"
CLASSIFIER_FORMAT = "ulmfit-classifier"
CLASSIFIER_FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
LABELS = "labels.json"
METRICS = "metrics.json"
CARD = "README.md"
DIRECTIONS = ("fwd", "bwd")
ENCODER = "0.encoder.weight"  # the embedding matrix in fastai's language-model state dict
TOKENIZER_FILES = {"sentencepiece": SP_MODEL, "word": WORD_VOCAB}
# What a model or classifier directory publishes, and all that a download fetches.
PUBLISHED_FILES = [CONFIG, CARD, SP_MODEL, WORD_VOCAB, LABELS, METRICS, *(f"{d}/{WEIGHTS}" for d in DIRECTIONS)]


def language_model_config(cfg: PretrainConfig, vocab_size: int | None, lang: str, tokenizer: dict) -> dict:
    """The core of a language model's `config.json`: architecture, vocabulary size, language and the tokenizer
    spec (`type`, `file`, `rules`; `hash` where known). Writers add directions, corpus, metrics and provenance."""
    return {
        "format": FORMAT,
        "architecture": "AWD_LSTM",
        "arch": cfg.arch(),
        "drop_mult": cfg.drop_mult,
        "vocab_size": vocab_size,
        "lang": lang,
        "tokenizer": {"special_tokens": SPECIAL_TOKENS} | tokenizer,
    }


def build_language_model(config: dict) -> torch.nn.Module:
    """fastai's AWD-LSTM language model (`get_language_model`) for a model config."""
    from fastai.text.models.awdlstm import AWD_LSTM
    from fastai.text.models.core import get_language_model

    return get_language_model(AWD_LSTM, config["vocab_size"], config=dict(config["arch"]),
                              drop_mult=config.get("drop_mult", 1.0))


def build_classifier(config: dict) -> torch.nn.Module:
    """fastai's `get_text_classifier` (AWD-LSTM encoder through `SentenceEncoder`, concat-pooling head) for a
    classifier config."""
    from fastai.text.models.awdlstm import AWD_LSTM
    from fastai.text.models.core import get_text_classifier

    head = config["head"]
    return get_text_classifier(AWD_LSTM, config["vocab_size"], len(config["labels"]), seq_len=head["seq_len"],
                               config=dict(config["arch"]), drop_mult=head["drop_mult"], max_len=head["max_len"])


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """A model's weights as safetensors, written under a temporary name and renamed."""
    from safetensors.torch import save_model

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_model(model, str(tmp), metadata={"format": "pt", "library": "ulmfit"})
    tmp.replace(path)


class ModelDir:
    """A model directory: `ModelDir.open(path)` reads and checks `config.json` once; the rest is read on demand.

    `spec` is what the user named it by and `repo_id` the Hub repository it came from, where one did (set by
    `ulmfit.zoo.pretrained.open_model`), so that what is made from it can say where it started.
    """

    def __init__(self, path: Path | str, config: dict, spec: str | None = None, repo_id: str | None = None):
        self.path, self.config = Path(path), config
        self.spec, self.repo_id = spec or str(path), repo_id

    @classmethod
    def open(cls, path: Path | str, kind: str | None = None) -> ModelDir:
        """The finished model directory at `path`; `kind` (FORMAT or CLASSIFIER_FORMAT) insists on one of them."""
        path = Path(path)
        if not (path / CONFIG).is_file():
            what = "classifier" if kind == CLASSIFIER_FORMAT else "ulmfit model"
            raise UlmfitError(f"{path} is not a {what} directory: it has no {CONFIG}.")
        config = read_json(path / CONFIG)
        if config is None:
            raise UlmfitError(f"{path / CONFIG} is not readable JSON: the directory is damaged; download or write "
                              "the model again.")
        fmt = config.get("format") if isinstance(config, dict) else None
        if fmt not in (FORMAT, CLASSIFIER_FORMAT) or (kind is not None and fmt != kind):
            wanted = "a ulmfit classifier; give a directory written by `ulmfit finetune`" \
                if kind == CLASSIFIER_FORMAT else "a ulmfit model config"
            raise UlmfitError(f"{path / CONFIG} is not {wanted} (format {fmt!r}).")
        if fmt == CLASSIFIER_FORMAT and config.get("format_version", 0) > CLASSIFIER_FORMAT_VERSION:
            raise UlmfitError(f"{path} was written by a newer ulmfit (format version {config['format_version']}); "
                              "upgrade ulmfit to read it.")
        return cls(path, config)

    # --- what the config says ---

    @property
    def is_classifier(self) -> bool:
        return self.config.get("format") == CLASSIFIER_FORMAT

    @property
    def lang(self) -> str:
        return self.config["lang"]

    @property
    def directions(self) -> list[str]:
        return list(self.config.get("directions") or [])

    @property
    def tokenizer_file(self) -> Path:
        """The tokenizer file, which must be the one its type names: a config cannot point outside the folder."""
        spec = self.config.get("tokenizer") or {}
        name = TOKENIZER_FILES.get(spec.get("type"))
        if name is None or spec.get("file") != name:
            raise UlmfitError(f"{self.path / CONFIG} names the tokenizer {spec.get('type')!r} with the file "
                              f"{spec.get('file')!r}; a ulmfit model has spm.model (sentencepiece) or vocab.json "
                              "(word): download or write the model again.")
        return self.path / name

    def weights(self, direction: str) -> Path:
        if direction not in DIRECTIONS:
            raise UlmfitError(f"direction must be 'fwd' or 'bwd', not '{direction}'.")
        return self.path / direction / WEIGHTS

    # --- reading ---

    @cached_property
    def tokenizer(self) -> TextTokenizer:
        spec = self.config["tokenizer"]
        path = self.tokenizer_file
        if not path.is_file():
            raise UlmfitError(f"{self.path} lacks its tokenizer file {path.name}.")
        return TextTokenizer(spec["type"], get_lang(self.lang), spec["rules"], path)

    def load_language_model(self, direction: str = "fwd", device: torch.device | str = "cpu") -> torch.nn.Module:
        """The language model of one direction, in eval mode."""
        return self._load(build_language_model(self.config), direction, device)

    def load_classifier(self, direction: str, device: torch.device | str = "cpu") -> torch.nn.Module:
        """The classifier of one direction, in eval mode."""
        return self._load(build_classifier(self.config), direction, device)

    def _load(self, model: torch.nn.Module, direction: str, device: torch.device | str) -> torch.nn.Module:
        from safetensors.torch import load_model

        path = self.weights(direction)
        if not path.is_file():
            have = [d for d in DIRECTIONS if self.weights(d).is_file()]
            raise UlmfitError(f"{self.path} has no {direction} model (it has: {', '.join(have) or 'none'}).")
        load_model(model, str(path), device=str(device))
        return model.to(device).eval()

    def labels(self) -> list[str]:
        return list(self.config["labels"])

    def metrics(self) -> dict:
        return read_json(self.path / METRICS) or {}

    def publishable_files(self) -> list[str]:
        """The files that go to the Hub; an error names what an unfinished directory lacks."""
        required = [CONFIG, self.config.get("tokenizer", {}).get("file"),
                    *(f"{d}/{WEIGHTS}" for d in self.directions)]
        missing = [f for f in required if not f or not (self.path / f).is_file()]
        if not self.directions or missing:
            raise UlmfitError(f"{self.path} is not a finished model directory: it lacks "
                              f"{', '.join(str(m) for m in missing) or 'trained directions'}; "
                              "let `ulmfit pretrain` (or `ulmfit finetune`) finish, or resume it, before publishing.")
        return [f for f in PUBLISHED_FILES if (self.path / f).is_file()]

    # --- writing ---

    def save_weights(self, direction: str, model: torch.nn.Module) -> None:
        save_weights(model, self.weights(direction))

    def write_tokenizer(self, kind: str, source: Path | list[str]) -> dict:
        """Write the tokenizer: a copy of a SentencePiece model file, or a word list as `vocab.json`. Returns the
        file and hash entries of the config's tokenizer spec."""
        path = self.path / TOKENIZER_FILES[kind]
        self.path.mkdir(parents=True, exist_ok=True)
        if isinstance(source, list):
            write_word_vocab(path, source)
        elif Path(source).resolve() != path.resolve():
            shutil.copyfile(source, path)
        self.__dict__.pop("tokenizer", None)
        return {"file": path.name, "hash": "sha256:" + file_digest(path)}

    def write_card(self, card) -> None:
        atomic_write_text(self.path / CARD, str(card).rstrip("\n") + "\n")

    def write_metrics(self, metrics: dict) -> None:
        write_json(self.path / METRICS, metrics)

    def finish(self, config: dict, card=None) -> None:
        """Write the labels of a classifier, the model card, then `config.json`: the directory is now finished."""
        self.config = config | {"ulmfit_version": __version__}
        if self.is_classifier:
            write_json(self.path / LABELS, self.config["labels"])
        if card is not None:
            self.write_card(card)
        write_json(self.path / CONFIG, self.config)
