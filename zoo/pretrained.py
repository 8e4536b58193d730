"""Getting a pretrained model by name, Hub repository or folder, and giving it back: `from_pretrained`,
`save_pretrained`, `push_to_hub` and `export_fastai`, in huggingface_hub's shape.

A model spec (`ulmfit.spec`) is a local model directory, `hf-hub:ORG/NAME[@REVISION]`, a catalogue name
(`ulmfit list`: pinned to a Hub commit and checked against the catalogue's sha256, or a third-party checkpoint
fetched from its original location and converted once into the cache), or a bare `ORG/NAME` on the Hub, tried
last. Every function that fetches takes huggingface_hub's arguments: `revision`, `cache_dir`, `force_download`,
`token`, `local_files_only`.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ulmfit.errors import UlmfitError
from ulmfit.pretrain.modeldir import DIRECTIONS, FORMAT, ModelDir
from ulmfit.spec import CATALOGUE, HUB, ModelSpec
from ulmfit.zoo.catalogue import get_entry

if TYPE_CHECKING:  # loading a model imports torch; naming, listing and describing one does not
    import torch

    from ulmfit.pretrain.tokenizer import TextTokenizer


def resolve_model(spec: str | Path | ModelSpec, *, revision: str | None = None,
                  cache_dir: str | Path | None = None, force_download: bool = False,
                  token: str | bool | None = None, local_files_only: bool = False) -> Path:
    """The local model directory for a model spec, downloading (or converting) it first where needed."""
    spec = spec if isinstance(spec, ModelSpec) else ModelSpec.parse(spec, revision)
    fetch = dict(cache_dir=cache_dir, force_download=force_download, local_files_only=local_files_only)
    if spec.kind == HUB:
        from ulmfit.zoo.hub import download_model

        from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError

        try:
            return download_model(spec.name, revision=spec.revision, token=token, **fetch)
        except UlmfitError as e:
            # ORG/NAME could have been a folder: where the Hub has no such repository, say both
            if spec.bare and isinstance(e.__cause__, (RepositoryNotFoundError, HFValidationError)):
                raise UlmfitError(f"there is no model directory at {spec.name}, and as a Hub repository: {e}") from e
            raise
    if spec.kind == CATALOGUE:
        entry = get_entry(spec.name)
        if entry.third_party is not None:
            from ulmfit.zoo.third_party import fetch_third_party

            return fetch_third_party(entry, **fetch)
        from ulmfit.zoo.hub import download_model

        # A revision other than the pinned one has no catalogue hashes to check against.
        pinned = spec.revision in (None, entry.revision)
        return download_model(entry.repo_id, revision=entry.revision if pinned else spec.revision, token=token,
                              sha256=entry.sha256 if pinned else None, **fetch)
    return Path(spec.name)


def open_model(spec: str | Path | ModelSpec, *, kind: str | None = None, **fetch) -> ModelDir:
    """The model directory a spec names (downloaded where needed; `fetch`: `resolve_model`'s arguments), its
    config read and checked, knowing the spec and the Hub repository it came from (its errors name them)."""
    parsed = spec if isinstance(spec, ModelSpec) else ModelSpec.parse(spec, fetch.pop("revision", None))
    repo_id = parsed.name if parsed.kind == HUB else get_entry(parsed.name).repo_id if parsed.kind == CATALOGUE \
        else None
    return ModelDir.open(resolve_model(parsed, **fetch), kind, spec=str(parsed), repo_id=repo_id)


def describe_model(spec: str | Path, **fetch) -> dict:
    """What `ulmfit info` shows: a catalogue entry as it stands, or the essentials of a model directory's config."""
    parsed = ModelSpec.parse(spec, fetch.pop("revision", None))
    if parsed.kind == CATALOGUE:
        return get_entry(parsed.name).to_dict()
    model = open_model(parsed, **fetch)
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


# --- saving and publishing ----------------------------------------------------------------------------------------

def save_model_dir(source: ModelDir, save_directory: str | Path, models: dict[str, torch.nn.Module]) -> Path:
    """Write `source` as a model (or classifier) directory at `save_directory`: its config, tokenizer, metrics and
    card, the weights of `models` as they are in memory and those of its other directions as loaded from it.

    The folder is written under a temporary name and swapped in at the end; it must not exist, be empty, or hold
    a model directory (which is replaced). Saving into `source` itself rewrites only the weights of `models`.
    """
    from ulmfit.pretrain.card import render_card  # huggingface_hub's ModelCard: only when writing

    out = Path(save_directory)
    if out.exists() and out.resolve() == source.path.resolve():
        for direction, model in models.items():
            source.save_weights(direction, model)
        return out
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "config.json").is_file())):
        raise UlmfitError(f"{out} holds other files; save into a new folder, or one that holds a ulmfit model.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".saving", dir=out.parent))
    try:
        target = ModelDir(tmp, {})
        config = dict(source.config)
        config["tokenizer"] = dict(config["tokenizer"]) | target.write_tokenizer(config["tokenizer"]["type"],
                                                                                 source.tokenizer_file)
        load = source.load_classifier if source.is_classifier else source.load_language_model
        for direction in source.directions:
            target.save_weights(direction, models[direction] if direction in models else load(direction))
        if metrics := source.metrics():
            target.write_metrics(metrics)
        target.finish(config, render_card(config, out.resolve().name))
        old = out.with_name(f".{out.name}.old")
        if out.exists():
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def push_model_dir(source: ModelDir, models: dict[str, torch.nn.Module], repo_id: str, **push) -> dict:
    """`push_model` of what `save_model_dir` would write (into a temporary folder first)."""
    from ulmfit.zoo.hub import push_model

    with tempfile.TemporaryDirectory(prefix="ulmfit-push-") as tmp:
        folder = save_model_dir(source, Path(tmp) / repo_id.split("/")[-1], models)
        return push_model(folder, repo_id, **push)


# --- the language model -------------------------------------------------------------------------------------------

@dataclass
class PretrainedLM:
    """One direction of a pretrained AWD-LSTM language model (`model`, fastai's, in eval mode), with its
    tokenizer and config, and the model directory it was loaded from."""

    model: torch.nn.Module
    tokenizer: TextTokenizer
    config: dict
    direction: str
    path: Path
    model_dir: ModelDir = field(repr=False)

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

    def save_pretrained(self, save_directory: str | Path) -> Path:
        """Write the model directory: this direction's weights as they are now, the other direction's as loaded,
        and the config, tokenizer and card. `from_pretrained(save_directory)` loads it again."""
        return save_model_dir(self.model_dir, save_directory, {self.direction: self.model})

    def push_to_hub(self, repo_id: str, *, private: bool = False, revision: str | None = None,
                    create_pr: bool = False, token: str | None = None, commit_message: str | None = None,
                    bench_results: Path | str | list[dict] | None = None, replace_card: bool = False) -> dict:
        """Publish the model directory `save_pretrained` would write to the Hub repository `repo_id` (created when
        new): see `ulmfit.zoo.hub.push_model`. Returns the repository URL and the commit."""
        return push_model_dir(self.model_dir, {self.direction: self.model}, repo_id, private=private,
                              revision=revision, create_pr=create_pr, token=token, commit_message=commit_message,
                              bench_results=bench_results, replace_card=replace_card)

    def export_fastai(self, out: str | Path, name: str | None = None) -> Path:
        """What plain fastai loads: `out/models/NAME.pth` and `NAME.pkl` for `language_model_learner(...,
        pretrained_fnames=[NAME, NAME])` (NAME_bwd.pth for the backward model), the tokenizer and its rules;
        see `ulmfit.zoo.fastai_bridge`. This direction's weights are exported as they are now."""
        from ulmfit.zoo.fastai_bridge import export_fastai

        return export_fastai(self.model_dir, out, name=name, models={self.direction: self.model})


def from_pretrained(spec: str | Path, *, direction: str = "fwd", revision: str | None = None,
                    cache_dir: str | Path | None = None, force_download: bool = False,
                    token: str | bool | None = None, local_files_only: bool = False,
                    device: str | torch.device = "cpu") -> PretrainedLM | tuple[PretrainedLM, PretrainedLM]:
    """A ready language model (eval mode) from a local model directory, a catalogue name, `hf-hub:ORG/NAME` or a
    bare `ORG/NAME` on the Hub.

    `revision` (a branch, tag or commit), `cache_dir`, `force_download`, `token` and `local_files_only` are
    huggingface_hub's. `direction="both"` gives the (forward, backward) pair, which share one tokenizer.
    """
    if direction not in (*DIRECTIONS, "both"):
        raise UlmfitError(f"direction must be 'fwd', 'bwd' or 'both', not {direction!r}.")
    model = open_model(spec, kind=FORMAT, revision=revision, cache_dir=cache_dir, force_download=force_download,
                       token=token, local_files_only=local_files_only)
    return load_language_model(model, direction, device)


def load_language_model(model: ModelDir, direction: str = "fwd", device: str | torch.device = "cpu"
                        ) -> PretrainedLM | tuple[PretrainedLM, PretrainedLM]:
    """`from_pretrained` of an opened model directory."""
    if direction not in (*DIRECTIONS, "both"):
        raise UlmfitError(f"direction must be 'fwd', 'bwd' or 'both', not {direction!r}.")

    def load(d: str) -> PretrainedLM:
        return PretrainedLM(model.load_language_model(d, device), model.tokenizer, model.config, d, model.path,
                            model)

    return (load("fwd"), load("bwd")) if direction == "both" else load(direction)
