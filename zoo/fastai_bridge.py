"""The bridge to plain fastai: a language model exported in the files fastai's own functions load.

fastai's `language_model_learner(dls, AWD_LSTM, config=..., pretrained_fnames=[WEIGHTS, VOCAB], path=OUT)` reads
`OUT/models/WEIGHTS.pth` (a state dict of `get_language_model`) and `OUT/models/VOCAB.pkl` (the pretraining
vocabulary, a pickled list of tokens), then `load_pretrained` moves each row to the token's place in the task's
vocabulary (`match_embeds`; unseen tokens get the mean row). So an export writes, under `OUT`:

    models/NAME.pth        the forward model's state dict (fastai key names; `torch.save`)
    models/NAME_bwd.pth    the backward model's, when there is one (`backwards=True`, pretrained_fnames=[NAME_bwd, NAME])
    models/NAME.pkl        the vocabulary: token strings by id (SentencePiece pieces, or the words of vocab.json)
    spm.model              the SentencePiece model, for fastai's `SentencePieceTokenizer(sp_model=...)`
    fastai.json            what fastai needs besides: the AWD_LSTM config, the tokenizer and the text rules as
                           fastai.text.core names, the file names
    README.md              the fastai code for this model

The pickle is written here for the user's own fastai, which requires one; nothing here reads a pickle.

Text rules: the SentencePiece rules are fastai's own functions. A word model's case rules (`replace_maj`,
`replace_all_caps`) mark capitals of every script here and only A-Z in fastai; fastai's `lowercase` also writes the
`xxbos` that this package adds as an id. Their fastai names are given, so fastai reproduces the tokens exactly for
ASCII text and leaves other capitals unmarked.
"""
from __future__ import annotations

import json
import logging
import pickle
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ulmfit import __version__
from ulmfit.errors import UlmfitError
from ulmfit.files import atomic_write_text, write_json
from ulmfit.pretrain.card import fastai_snippet, fastai_usage
from ulmfit.pretrain.modeldir import FORMAT, ModelDir

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

MANIFEST = "fastai.json"


def default_name(model: ModelDir) -> str:
    """The file stem of an export: the model's name (its Hub repository, catalogue name or folder)."""
    spec = model.repo_id or str(model.spec or model.path)
    stem = Path(spec.split(":", 1)[-1].split("@")[0]).name or "lm"
    return re.sub(r"[^A-Za-z0-9._-]", "-", stem)


def export_fastai(model: ModelDir | str | Path, out: str | Path, name: str | None = None,
                  models: dict[str, torch.nn.Module] | None = None, **fetch) -> Path:
    """Export a language model (a `ModelDir`, or any spec `from_pretrained` takes, with its `fetch` arguments) as
    the files plain fastai loads, into the folder `out` (new, empty, or an earlier export). `models` replaces the
    weights of a direction by a model in memory. Returns `out`."""
    import torch

    if not isinstance(model, ModelDir):
        from ulmfit.zoo.pretrained import open_model

        model = open_model(model, **fetch)
    if model.is_classifier:
        raise UlmfitError(f"{model.spec} is a classifier; export-fastai exports language models (give the language "
                          "model it was fine-tuned from).")
    models = models or {}
    out = Path(out)
    name = name or default_name(model)
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise UlmfitError(f"{name!r} cannot be a file name of fastai's models folder; use letters, digits, '.', '_' "
                          "and '-'.")
    if out.exists() and not _reusable(out):
        raise UlmfitError(f"{out} exists and holds other files; export into a new folder (or an earlier export).")
    config = model.config
    if config.get("format") != FORMAT:
        raise UlmfitError(f"{model.path} is not a ulmfit language model.")
    folder = out / "models"
    folder.mkdir(parents=True, exist_ok=True)
    stems = {"fwd": name, "bwd": f"{name}_bwd"}
    for direction in model.directions:
        lm = models[direction] if direction in models else model.load_language_model(direction)
        path = folder / f"{stems[direction]}.pth"
        tmp = path.with_name(path.name + ".tmp")
        torch.save({k: v.detach().cpu() for k, v in lm.state_dict().items()}, tmp)
        tmp.replace(path)
    vocab = folder / f"{name}.pkl"
    with open(vocab.with_name(vocab.name + ".tmp"), "wb") as f:
        pickle.dump(list(model.tokenizer.itos), f)
    vocab.with_name(vocab.name + ".tmp").replace(vocab)
    if config["tokenizer"]["type"] == "sentencepiece":
        shutil.copyfile(model.tokenizer_file, out / "spm.model")
    usage = fastai_usage(config, name, str(out))
    write_json(out / MANIFEST, {
        "format": "ulmfit-fastai-export", "ulmfit_version": __version__, "source": str(model.spec),
        "lang": config["lang"], "arch": "AWD_LSTM", "config": config["arch"], "drop_mult": config.get("drop_mult", 1.0),
        "vocab_size": len(model.tokenizer.itos),
        "pretrained_fnames": {d: [stems[d], name] for d in model.directions},
        "tokenizer": {"type": config["tokenizer"]["type"], "segmenter": usage["segmenter"],
                      "sp_model": "spm.model" if config["tokenizer"]["type"] == "sentencepiece" else None},
        "rules": usage["rules"], "ulmfit_rules": config["tokenizer"].get("rules") or [],
    })
    atomic_write_text(out / "README.md", _readme(usage))
    log.debug("exported %s for fastai into %s (%s)", model.spec, out, ", ".join(
        f"{d}: pretrained_fnames={[stems[d], name]}" for d in model.directions))
    return out


def _reusable(out: Path) -> bool:
    """Whether `out` may be exported into: a folder that is empty, holds an earlier export (with what fastai saved
    into it since), or only what an export that stopped part-way writes (`fastai.json` comes last)."""
    if not out.is_dir():
        return False
    if (out / MANIFEST).is_file():
        return True
    ours = {"spm.model", "README.md", "README.md.tmp", f"{MANIFEST}.tmp"}
    return all(f.relative_to(out).parts[0] == "models" or f.name in ours for f in out.rglob("*") if f.is_file())


def _readme(usage: dict) -> str:
    return (f"# {usage['name']} for fastai\n\nExported by ulmfit {__version__}. Load it with fastai alone "
            f"(`{MANIFEST}` lists the same settings):\n\n" + fastai_snippet(usage) + "\n")


def read_manifest(path: str | Path) -> dict:
    """The `fastai.json` of an export."""
    try:
        return json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UlmfitError(f"{path} is not an export of `ulmfit export-fastai` ({e}).") from None
