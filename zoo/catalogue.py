"""The catalogue of named models: data in `zoo/catalogue.yaml`, plus the user's own catalogue file on top.

An entry pins a Hub repository to a commit and records what a user needs to choose a model (language, tokenizer,
corpus, perplexities, licence) and the sha256 of each weight file, which downloads are checked against.
Third-party entries (older ULMFiT checkpoints) name their original download locations and the converter that
imports them instead of a Hub repository. `ulmfit catalogue add` writes to the user catalogue
(`ULMFIT_CATALOGUE`, default `~/.config/ulmfit/catalogue.yaml`), whose entries win over built-in ones.
"""
from __future__ import annotations

import difflib
import fnmatch
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ulmfit.errors import UlmfitError
from ulmfit.files import atomic_write_text, is_relative_file
from ulmfit.pretrain.modeldir import DIRECTIONS, PUBLISHED_FILES, TOKENIZER_FILES, WEIGHTS
from ulmfit.spec import NAME, REPO_ID, SHA1

BUILTIN = "catalogue.yaml"
SHA256 = re.compile(r"^[0-9a-f]{64}$")
REQUIRED = ("name", "lang", "tokenizer", "directions", "license", "sha256")


@dataclass(frozen=True)
class ModelEntry:
    """One named model. Hub models have `repo_id` and a pinned `revision`; third-party ones have `third_party`."""

    name: str
    lang: str
    tokenizer: dict[str, Any]
    directions: tuple[str, ...]
    license: str
    sha256: dict[str, str | None]
    repo_id: str | None = None
    revision: str | None = None
    corpus: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    third_party: dict[str, Any] | None = None
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        raw = {k: getattr(self, k) for k in self.__dataclass_fields__}
        raw["directions"] = list(self.directions)
        return {k: v for k, v in raw.items() if v not in (None, "", {})}


def user_catalogue_path() -> Path:
    return Path(os.environ.get("ULMFIT_CATALOGUE") or Path.home() / ".config" / "ulmfit" / "catalogue.yaml")


def validate_entry(raw: dict[str, Any]) -> ModelEntry:
    """A `ModelEntry` from a catalogue mapping; one sentence saying what is wrong otherwise."""
    if not isinstance(raw, dict):
        raise UlmfitError(f"a catalogue entry must be a mapping, not {type(raw).__name__}.")
    name = raw.get("name", "?")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise UlmfitError(f"catalogue entry {name!r} lacks {', '.join(missing)}.")
    unknown = set(raw) - set(ModelEntry.__dataclass_fields__)
    if unknown:
        raise UlmfitError(f"catalogue entry {name!r} has unknown keys: {', '.join(sorted(unknown))}.")

    def bad(what: str) -> UlmfitError:
        return UlmfitError(f"catalogue entry {name!r}: {what}.")

    if not isinstance(name, str) or not NAME.match(name):
        raise bad("the name must be lower-case letters, digits, '.', '_' or '-'")
    from ulmfit.langs import get_lang

    get_lang(raw["lang"])  # a clear error for an unknown language code
    tok = raw["tokenizer"]
    if not isinstance(tok, dict) or tok.get("type") not in TOKENIZER_FILES or not isinstance(tok.get("vocab_size"), int):
        raise bad("tokenizer must be {type: sentencepiece|word, vocab_size: N}")
    directions = tuple(raw["directions"])
    if not directions or any(d not in DIRECTIONS for d in directions) or len(set(directions)) != len(directions):
        raise bad("directions must be a non-empty list of fwd and/or bwd")
    hashes = raw["sha256"]
    if not isinstance(hashes, dict) or not hashes:
        raise bad("sha256 must map each weight file to its hash")
    # Keys name files that downloads check and may delete: they must stay inside the model's folder.
    for key in hashes:
        if not is_relative_file(key):
            raise bad(f"sha256 key {key!r} is not a relative path inside the model's folder; name the file as it "
                      "is in the repository, e.g. fwd/model.safetensors")
    third_party = raw.get("third_party")
    if third_party is None:
        if unpublished := sorted(set(hashes) - set(PUBLISHED_FILES)):
            raise bad(f"sha256 key {unpublished[0]!r} is not a file of a model repository "
                      f"({', '.join(PUBLISHED_FILES)})")
        if not isinstance(raw.get("repo_id"), str) or not REPO_ID.match(raw["repo_id"]):
            raise bad("repo_id must be a Hub repository id, ORG/NAME")
        if not isinstance(raw.get("revision"), str) or not SHA1.match(raw["revision"]):
            raise bad("revision must pin a commit (40 hexadecimal characters)")
        for d in directions:
            if f"{d}/{WEIGHTS}" not in hashes:
                raise bad(f"sha256 has no entry for {d}/model.safetensors")
        if any(not isinstance(h, str) or not SHA256.match(h) for h in hashes.values()):
            raise bad("every sha256 must be 64 hexadecimal characters")
    else:
        if not isinstance(third_party, dict) or not third_party.get("format") or not third_party.get("urls"):
            raise bad("third_party must give the converter `format` and the original download `urls`")
        urls = third_party["urls"]
        if not isinstance(urls, dict) or any(not str(u).startswith(("https://", "http://")) for u in urls.values()):
            raise bad("third_party.urls must map each file to an http(s) URL")
        for key in urls:
            if not is_relative_file(key) or "/" in key:
                raise bad(f"third_party.urls key {key!r} is not a plain file name; name the file the URL is saved "
                          "as, e.g. wt103-fwd.tgz")
        if set(hashes) - set(urls):
            raise bad("sha256 keys of a third-party entry must be keys of third_party.urls")
        if any(h is not None and not (isinstance(h, str) and SHA256.match(h)) for h in hashes.values()):
            raise bad("each sha256 must be 64 hexadecimal characters, or null where the publisher gives none")
    metrics = raw.get("metrics") or {}
    if any(d not in DIRECTIONS or not isinstance(m, dict) for d, m in metrics.items()):
        raise bad("metrics must map fwd/bwd to figures such as {valid_ppl: 25.1}")
    return ModelEntry(**{**raw, "directions": directions})


def _read(text: str, where: str) -> list[dict[str, Any]]:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise UlmfitError(f"the catalogue {where} is not valid YAML ({e}).") from e
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list):
        raise UlmfitError(f"the catalogue {where} must hold a `models:` list.")
    return models


def builtin_entries() -> list[dict[str, Any]]:
    return _read(resources.files("ulmfit.zoo").joinpath(BUILTIN).read_text(encoding="utf-8"), "shipped with ulmfit")


def load_catalogue() -> dict[str, ModelEntry]:
    """Every named model: the built-in catalogue, then the user catalogue (whose entries replace same names)."""
    entries = {e.name: e for e in map(validate_entry, builtin_entries())}
    user = user_catalogue_path()
    if user.is_file():
        entries |= {e.name: e for e in map(validate_entry, _read(user.read_text(encoding="utf-8"), str(user)))}
    return entries


def get_entry(name: str) -> ModelEntry:
    catalogue = load_catalogue()
    if name in catalogue:
        return catalogue[name]
    close = difflib.get_close_matches(name, list(catalogue), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else " `ulmfit list` shows the catalogue."
    raise UlmfitError(f"no model named {name!r} in the catalogue.{hint}")


def list_models(pattern: str = "*", lang: str | None = None) -> list[str]:
    """Names of catalogue models matching a shell-style `pattern`, optionally of one language, sorted."""
    return sorted(name for name, e in load_catalogue().items()
                  if fnmatch.fnmatchcase(name, pattern) and (lang is None or e.lang == lang))


def add_entry(raw: dict[str, Any], path: Path | None = None) -> Path:
    """Validate an entry and write it into a catalogue file (the user's by default), replacing its namesake."""
    entry = validate_entry(raw)
    path = Path(path) if path else user_catalogue_path()
    models = _read(path.read_text(encoding="utf-8"), str(path)) if path.is_file() else []
    models = [m for m in models if m.get("name") != entry.name] + [entry.to_dict()]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, yaml.safe_dump({"models": models}, sort_keys=False, allow_unicode=True))
    return path
