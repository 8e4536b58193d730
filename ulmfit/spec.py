"""Model specs and model names: the one parser of what users type to name a model, and the one naming scheme.

A spec is, in the order it is tried:
- a local directory (what `ulmfit pretrain`, `convert` or `finetune` wrote);
- `hf-hub:ORG/NAME`, optionally `@REVISION` (a branch, tag or commit), any Hub repository in the model format;
- a catalogue name (`ulmfit list`): lower-case letters, digits, `.`, `_` and `-`;
- a bare `ORG/NAME`, taken as a Hub repository when no folder of that name exists.

Names of new models and corpora follow `{lang}-{source}-{tokenizer}{size}`: `vi-wiki-sp15k`, `th-text-word60k`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ulmfit.errors import UlmfitError

HUB_PREFIX = "hf-hub:"
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
SHA1 = re.compile(r"^[0-9a-f]{40}$")
LOCAL, HUB, CATALOGUE = "local", "hub", "catalogue"


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from: `kind` is local, hub or catalogue; `name` the folder, `ORG/NAME` or catalogue
    name; `revision` a Hub branch, tag or commit (None: the catalogue's pin, or main)."""

    kind: str
    name: str
    revision: str | None = None
    bare: bool = False  # a Hub repository given without `hf-hub:`, which could also have been a missing folder

    @classmethod
    def parse(cls, spec: str | Path, revision: str | None = None) -> ModelSpec:
        text = str(spec).strip()
        if Path(text).is_dir():
            return cls(LOCAL, text, revision)
        if text.startswith(HUB_PREFIX):
            repo_id, _, pinned = text[len(HUB_PREFIX):].partition("@")
            if not REPO_ID.match(repo_id):
                raise UlmfitError(f"{text!r} does not name a Hub repository: write {HUB_PREFIX}ORG/NAME, "
                                  f"optionally with @REVISION.")
            return cls(HUB, repo_id, revision or pinned or None)
        if NAME.match(text):
            return cls(CATALOGUE, text, revision)
        if REPO_ID.match(text):
            return cls(HUB, text, revision, bare=True)
        raise UlmfitError(f"no model directory at {text}; give a folder written by `ulmfit pretrain`, a catalogue "
                          f"name (`ulmfit list`), or {HUB_PREFIX}ORG/NAME for a Hub repository.")

    @property
    def is_local(self) -> bool:
        return self.kind == LOCAL

    def __str__(self) -> str:
        if self.kind == HUB:
            return f"{HUB_PREFIX}{self.name}" + (f"@{self.revision}" if self.revision else "")
        return self.name


def check_repo_id(repo_id: str) -> str:
    """`repo_id` if it is a Hub repository id (ORG/NAME), else the one-sentence error."""
    if not REPO_ID.match(repo_id):
        raise UlmfitError(f"{repo_id!r} is not a Hub repository id: give ORG/NAME, e.g. my-org/vi-wiki-sp15k.")
    return repo_id


def source_label(source: dict | None) -> str:
    """The `{source}` part of a name, from a corpus's `source` record: wiki (a Wikipedia dump or the Hub's
    `wikimedia/wikipedia`), sample (the built-in sample dumps), hub (another Hub dataset), text, or its type."""
    source = source or {}
    kind = source.get("type")
    if source.get("sample"):
        return "sample"
    if kind == "wikipedia-dump" or "wikipedia" in str(source.get("dataset", "")).lower():
        return "wiki"
    return {"hf-dataset": "hub", None: "model"}.get(kind, str(kind))


def model_name(lang: str, source: str, tokenizer: str, vocab_size: int) -> str:
    """`{lang}-{source}-{sp|word}{size}`, the size in thousands where it is 1,000 or more (vi-wiki-sp15k)."""
    size = f"{round(vocab_size / 1000)}k" if vocab_size >= 1000 else str(vocab_size)
    tok = "sp" if tokenizer == "sentencepiece" else "word"
    return re.sub(r"[^a-z0-9._-]", "-", f"{lang}-{source}-{tok}{size}".lower())
