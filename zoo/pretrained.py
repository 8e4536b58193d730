"""Getting a pretrained model by name, Hub repository or folder: `from_pretrained` and friends.

A model spec (`ulmfit.spec`) is a local model directory, `hf-hub:ORG/NAME[@REVISION]`, a catalogue name
(`ulmfit list`: pinned to a Hub commit and checked against the catalogue's sha256, or a third-party checkpoint
fetched from its original location and converted once into the cache), or a bare `ORG/NAME` on the Hub.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ulmfit.errors import UlmfitError
from ulmfit.pretrain.modeldir import DIRECTIONS, FORMAT, ModelDir
from ulmfit.pretrain.tokenizer import TextTokenizer
from ulmfit.spec import CATALOGUE, HUB, ModelSpec
from ulmfit.zoo.catalogue import get_entry


def resolve_model(spec: str | Path | ModelSpec, revision: str | None = None, cache_dir: str | Path | None = None,
                  local_files_only: bool = False) -> Path:
    """The local model directory for a model spec, downloading (or converting) it first where needed."""
    spec = spec if isinstance(spec, ModelSpec) else ModelSpec.parse(spec, revision)
    if spec.kind == HUB:
        from ulmfit.zoo.hub import download_model

        try:
            return download_model(spec.name, revision=spec.revision, cache_dir=cache_dir,
                                  local_files_only=local_files_only)
        except UlmfitError as e:
            if spec.bare:
                raise UlmfitError(f"there is no model directory at {spec.name}, and as a Hub repository: {e}") from e
            raise
    if spec.kind == CATALOGUE:
        entry = get_entry(spec.name)
        if entry.third_party is not None:
            from ulmfit.zoo.third_party import fetch_third_party

            return fetch_third_party(entry, cache_dir=cache_dir, local_files_only=local_files_only)
        from ulmfit.zoo.hub import download_model

        # A revision other than the pinned one has no catalogue hashes to check against.
        pinned = spec.revision in (None, entry.revision)
        return download_model(entry.repo_id, revision=entry.revision if pinned else spec.revision,
                              cache_dir=cache_dir, local_files_only=local_files_only,
                              sha256=entry.sha256 if pinned else None)
    return Path(spec.name)


def open_model(spec: str | Path | ModelSpec, revision: str | None = None, cache_dir: str | Path | None = None,
               local_files_only: bool = False, kind: str | None = None) -> ModelDir:
    """The model directory a spec names (downloaded where needed), its config read and checked, knowing the spec
    and the Hub repository it came from."""
    spec = spec if isinstance(spec, ModelSpec) else ModelSpec.parse(spec, revision)
    repo_id = spec.name if spec.kind == HUB else get_entry(spec.name).repo_id if spec.kind == CATALOGUE else None
    return ModelDir.open(resolve_model(spec, cache_dir=cache_dir, local_files_only=local_files_only), kind,
                         spec=str(spec), repo_id=repo_id)


def describe_model(spec: str | Path, revision: str | None = None, cache_dir: str | Path | None = None,
                   local_files_only: bool = False) -> dict:
    """What `ulmfit info` shows: a catalogue entry as it stands, or the essentials of a model directory's config."""
    parsed = ModelSpec.parse(spec, revision)
    if parsed.kind == CATALOGUE:
        return get_entry(parsed.name).to_dict()
    model = open_model(parsed, cache_dir=cache_dir, local_files_only=local_files_only)
    config = model.config
    described = {"path": str(model.path), "format": config["format"], "lang": config["lang"],
                 "tokenizer": {"type": config["tokenizer"]["type"], "vocab_size": config["vocab_size"]},
                 "directions": model.directions, "arch": config["arch"]}
    if model.is_classifier:
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
    model = open_model(spec, revision, cache_dir, local_files_only, kind=FORMAT)

    def load(d: str) -> PretrainedLM:
        return PretrainedLM(model.load_language_model(d, device), model.tokenizer, model.config, d, model.path)

    return (load("fwd"), load("bwd")) if direction == "both" else load(direction)
