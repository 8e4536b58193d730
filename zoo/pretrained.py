"""Getting a pretrained language model by name, Hub repository or folder: `from_pretrained` and friends.

A model spec is one of:
- a local model directory (what `ulmfit pretrain` or `ulmfit convert` wrote);
- `hf-hub:ORG/NAME` (optionally `hf-hub:ORG/NAME@REVISION`), any Hub repository in the model directory format;
- a catalogue name (`ulmfit list`), pinned to a Hub commit and checked against the catalogue's sha256, or a
  third-party checkpoint fetched from its original location and converted once into the cache.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ulmfit.errors import UlmfitError
from ulmfit.pretrain.modeldir import DIRECTIONS, load_language_model, read_config
from ulmfit.pretrain.tokenizer import TextTokenizer
from ulmfit.zoo.catalogue import get_entry

HUB_PREFIX = "hf-hub:"


def resolve_model(spec: str | Path, revision: str | None = None, cache_dir: str | Path | None = None,
                  local_files_only: bool = False) -> Path:
    """The local model directory for a model spec, downloading (or converting) it first where needed."""
    text = str(spec)
    if Path(text).is_dir():
        return Path(text)
    if text.startswith(HUB_PREFIX):
        repo_id, _, pinned = text[len(HUB_PREFIX):].partition("@")
        from ulmfit.zoo.hub import download_model

        return download_model(repo_id, revision=revision or pinned or None, cache_dir=cache_dir,
                              local_files_only=local_files_only)
    if "/" in text or "\\" in text or text.startswith("."):
        raise UlmfitError(f"no model directory at {text}; give a folder written by `ulmfit pretrain`, "
                          f"a catalogue name, or {HUB_PREFIX}ORG/NAME for a Hub repository.")
    entry = get_entry(text)
    if entry.third_party is not None:
        from ulmfit.zoo.convert import fetch_third_party

        return fetch_third_party(entry, cache_dir=cache_dir, local_files_only=local_files_only)
    from ulmfit.zoo.hub import download_model

    # A revision other than the pinned one has no catalogue hashes to check against.
    pinned = revision in (None, entry.revision)
    return download_model(entry.repo_id, revision=entry.revision if pinned else revision, cache_dir=cache_dir,
                          local_files_only=local_files_only, sha256=entry.sha256 if pinned else None)


def describe_model(spec: str | Path, revision: str | None = None, cache_dir: str | Path | None = None,
                   local_files_only: bool = False) -> dict:
    """What `ulmfit info` shows: a catalogue entry as it stands, or the essentials of a model directory's config."""
    text = str(spec)
    if not Path(text).is_dir() and not text.startswith(HUB_PREFIX) and "/" not in text:
        return get_entry(text).to_dict()
    from ulmfit.zoo.hub import read_model_config

    path = resolve_model(spec, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
    config = read_model_config(path)  # a language model or a classifier
    described = {"path": str(path), "format": config["format"], "lang": config["lang"],
                 "tokenizer": {"type": config["tokenizer"]["type"], "vocab_size": config["vocab_size"]},
                 "directions": config.get("directions", []), "arch": config["arch"]}
    if "labels" in config:
        described |= {"labels": config["labels"], "multi_label": config.get("multi_label", False),
                      "eval_results": config.get("eval_results", [])}
    else:
        described["corpus"] = config.get("corpus", {})
    return described | {"metrics": config.get("metrics", {}), "ulmfit_version": config.get("ulmfit_version")}


@dataclass
class PretrainedLM:
    """One direction of a pretrained AWD-LSTM language model, with its tokenizer and config."""

    model: torch.nn.Module
    tokenizer: TextTokenizer
    config: dict
    direction: str
    path: Path

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids)

    def generate(self, prompt: str, words: int = 50, temperature: float = 0.8, top_k: int = 40,
                 seed: int | None = None) -> str:
        """Continue `prompt` (forward models only: a backward model reads text right to left)."""
        if self.direction != "fwd":
            raise UlmfitError("text generation needs the forward model; load it with direction='fwd'.")
        from ulmfit.pretrain.generate import continue_text

        return continue_text(self.model, self.tokenizer, prompt, words, temperature, top_k, seed)


def from_pretrained(spec: str | Path, direction: str = "fwd", revision: str | None = None,
                    cache_dir: str | Path | None = None, local_files_only: bool = False,
                    device: str | torch.device = "cpu") -> PretrainedLM | tuple[PretrainedLM, PretrainedLM]:
    """A ready language model (eval mode) from a catalogue name, `hf-hub:ORG/NAME` or a model directory.

    `direction="both"` gives the (forward, backward) pair, which share one tokenizer.
    """
    if direction not in (*DIRECTIONS, "both"):
        raise UlmfitError(f"direction must be 'fwd', 'bwd' or 'both', not {direction!r}.")
    path = resolve_model(spec, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only)
    read_config(path)  # a clear error for a folder that is not a model directory
    tokenizer = TextTokenizer.from_dir(path)

    def load(d: str) -> PretrainedLM:
        model, config = load_language_model(path, d, device)
        return PretrainedLM(model, tokenizer, config, d, path)

    return (load("fwd"), load("bwd")) if direction == "both" else load(direction)

