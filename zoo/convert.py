"""Importing older ULMFiT checkpoints as model directories: `ulmfit convert` (the formats are in
`legacy_formats.py`, finding their files in `checkpoint_files.py`, reading them safely in `safe_load.py`).

How ids stay consistent. Word-level models get a `vocab.json` that starts with fastai v2's nine special tokens in
fastai's order; every other token keeps its relative order, and the embedding, its dropout copy, the tied decoder
and the decoder bias are permuted with the tokens (fastai's `match_embeds`). A special token the old vocabulary
lacks gets the mean row. SentencePiece models keep `spm.model` and take its ids: each piece gets the row of the
same piece in the old vocabulary (a special token's `▁xxbos` form is the one the text produced; its bare form
`xxpad` is the one fastai padded with), and a piece the old vocabulary lacks gets the row of `xxunk`, which is what
fastai fed the model for it. The converter then checks that both models give the same logits on the same tokens.
"""
from __future__ import annotations

import logging
import re
import shutil
import tempfile
from pathlib import Path

import torch

from ulmfit.config import ARCH_KEYS, PretrainConfig
from ulmfit.errors import UlmfitError
from ulmfit.files import file_digest
from ulmfit.pretrain.card import render_card
from ulmfit.pretrain.modeldir import ENCODER, ModelDir, build_language_model, language_model_config
from ulmfit.pretrain.tokenizer import SPECIAL_TOKENS, load_sentencepiece
from ulmfit.zoo.checkpoint_files import Checkpoint, find_checkpoint
from ulmfit.zoo.legacy_formats import FORMATS, SPECIAL_SPELLINGS, LegacyFormat
from ulmfit.zoo.safe_load import load_state_dict, read_itos

log = logging.getLogger(__name__)

DECODER = "1.decoder.weight"
_SP_SPECIALS = ["\u2581" + t for t in SPECIAL_TOKENS]  # how fastai's SentencePieceTokenizer names them


def convert(path: Path | str, to: Path | str, format: str | None = None, lang: str | None = None,
            allow_pickle: bool = False) -> Path:
    """Import an older ULMFiT checkpoint (a folder, a .tgz/.zip archive, or its weights file) into the model
    directory `to`, which must not exist yet or be empty. `format` is `fastai-wt103`, `fastai-ulmfit` or `thai2fit`
    (detected when not given); `lang` overrides the language the checkpoint or its format implies.
    """
    return convert_checkpoint(Path(path), Path(to), format, lang, allow_pickle, origin={})


# --- the conversion ----------------------------------------------------------------------------------------------

def convert_checkpoint(path: Path, to: Path, format: str | None, lang: str | None, allow_pickle: bool,
                       origin: dict) -> Path:
    """`convert`, recording `origin` (where the files were downloaded from) in the config."""
    if not path.exists():
        raise UlmfitError(f"{path} does not exist; give a checkpoint folder, its .tgz/.zip archive or its .pth file.")
    if format is not None and format not in FORMATS:
        raise UlmfitError(f"unknown checkpoint format {format!r}; use one of {', '.join(FORMATS)}.")
    if to.exists() and (not to.is_dir() or any(to.iterdir())):
        raise UlmfitError(f"{to} already exists and is not empty; choose a new folder with --to, or delete it.")
    to.parent.mkdir(parents=True, exist_ok=True)
    tmp = to.with_name(f".{to.name}.converting")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tempfile.TemporaryDirectory(dir=to.parent, prefix=f".{to.name}.source-") as staging:
            ckpt = find_checkpoint(path, Path(staging), format, lang)
            _write_model_dir(ckpt, tmp, allow_pickle, origin | {"source": str(path)})
        if to.exists():
            to.rmdir()
        tmp.rename(to)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("converted %s (%s) into %s", path, ckpt.format.name, to)
    return to


def _write_model_dir(ckpt: Checkpoint, out: Path, allow_pickle: bool, origin: dict) -> None:
    fmt = ckpt.format
    out.mkdir(parents=True)
    model_dir = ModelDir(out, {})
    if fmt.tokenizer == "sentencepiece":
        itos, sources = _sp_ids(ckpt)
        tok = model_dir.write_tokenizer("sentencepiece", ckpt.spm)
    else:
        itos = _word_itos(read_vocab(ckpt.vocabs["fwd" if "fwd" in ckpt.vocabs else "bwd"]))
        sources = {d: itos for d in ckpt.weights}
        tok = model_dir.write_tokenizer("word", itos)
    archs = {}
    for direction, weights in sorted(ckpt.weights.items()):
        old_itos = read_vocab(ckpt.vocabs[direction])
        model, archs[direction] = _converted_model(weights, old_itos, sources[direction], fmt, allow_pickle)
        model_dir.save_weights(direction, model)
    if len({tuple(sorted(a.items())) for a in archs.values()}) > 1:
        raise UlmfitError(f"the forward and backward models have different sizes ({archs}); convert each on its own.")
    config = _config(ckpt, next(iter(archs.values())), len(itos), tok, origin)
    model_dir.finish(config, render_card(config, out.resolve().name))


def _config(ckpt: Checkpoint, arch: dict, vocab_size: int, tokenizer: dict, origin: dict) -> dict:
    """config.json, assembled as `ulmfit pretrain` assembles it, plus the record of where the weights came from
    (`origin`; its `metrics`, the figures the publisher gives, and its `license` become the config's)."""
    fmt = ckpt.format
    origin = dict(origin)
    metrics = origin.pop("metrics", None)
    licence = origin.pop("license", None) or fmt.license
    spec = {"type": fmt.tokenizer, "rules": fmt.text_rules(ckpt.lang)} | tokenizer
    return language_model_config(PretrainConfig(**arch, drop_mult=fmt.drop_mult), vocab_size, ckpt.lang, spec) | {
        "directions": sorted(ckpt.weights),
        "corpus": fmt.corpus_for(ckpt.lang),
        "license": licence,
        "converted_from": {"format": fmt.name, "title": fmt.title, **origin, "homepage": fmt.homepage,
                           "files": {name: file_digest(p) for name, p in sorted(ckpt.inputs.items())}},
    } | ({"metrics": metrics} if metrics else {})


def _converted_model(weights: Path, old_itos: list[str], source_tokens: list[str], fmt: LegacyFormat,
                     allow_pickle: bool) -> tuple[torch.nn.Module, dict]:
    """The fastai 2.8 language model for one direction, its rows in the new id order; and its architecture.

    `source_tokens[i]` is the old token whose row becomes new id `i`.
    """
    from fastai.text.learner import clean_raw_keys, match_embeds

    state = clean_raw_keys(load_state_dict(weights, allow_pickle))
    arch = _infer_arch(state, weights) | fmt.dropouts
    rows = state[ENCODER].shape[0]
    if rows != len(old_itos):
        raise UlmfitError(f"the vocabulary beside {weights.name} has {len(old_itos):,} tokens but its embedding has "
                          f"{rows:,} rows; the two files do not belong to the same model.")
    old = _load_into(build_language_model({"arch": arch, "vocab_size": rows}), dict(state), weights)
    new = _load_into(build_language_model({"arch": arch, "vocab_size": len(source_tokens)}),
                     match_embeds(dict(state), old_itos, source_tokens), weights)
    _check_same_logits(old, new, old_itos, source_tokens, weights)
    return new, {k: arch[k] for k in ARCH_KEYS}


def _infer_arch(state: dict[str, torch.Tensor], path: Path) -> dict:
    """The AWD-LSTM's sizes, read off the tensor shapes."""
    if ENCODER not in state:
        if "encoder.weight" in state:
            raise UlmfitError(f"{path} holds an encoder without its decoder; convert the language model's weights "
                              "(the *model.pth or lstm_*.pth file), not the encoder's.")
        raise UlmfitError(f"{path} does not hold a fastai AWD-LSTM language model (it has no {ENCODER}).")
    layers = sorted({int(m[1]) for k in state if (m := re.match(r"0\.rnns\.(\d+)\.", k))})
    if not layers or layers != list(range(len(layers))) or "0.rnns.0.weight_hh_l0_raw" not in state:
        raise UlmfitError(f"{path} does not hold fastai AWD-LSTM layers (0.rnns.N.weight_hh_l0_raw).")
    emb_sz = state[ENCODER].shape[1]
    n_hid = state["0.rnns.0.weight_hh_l0_raw"].shape[1] if len(layers) > 1 else emb_sz
    if DECODER in state and not torch.equal(state[DECODER], state[ENCODER]):
        raise UlmfitError(f"{path} has a decoder that is not tied to its embedding; only fastai's tied "
                          "language models can be converted.")
    return {"emb_sz": emb_sz, "n_hid": n_hid, "n_layers": len(layers), "pad_token": 1, "bidir": False,
            "tie_weights": True, "out_bias": "1.decoder.bias" in state}


def _load_into(model: torch.nn.Module, state: dict, path: Path) -> torch.nn.Module:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        detail = str(e).strip().splitlines()
        raise UlmfitError(f"the weights in {path} do not fit a fastai AWD-LSTM language model "
                          f"({detail[1].strip() if len(detail) > 1 else detail[0]}).") from None
    return model.eval()


@torch.no_grad()
def _check_same_logits(old: torch.nn.Module, new: torch.nn.Module, old_itos: list[str], source_tokens: list[str],
                       path: Path, n: int = 64) -> None:
    """Both models, fed the same tokens, must give the same logits for every token both have."""
    o2i = {t: i for i, t in enumerate(old_itos)}  # the last of duplicates, as match_embeds takes them
    pairs = [(i, o2i[t]) for i, t in enumerate(source_tokens) if t in o2i]
    if not pairs:
        return
    new_ids, old_ids = (torch.tensor(x) for x in zip(*pairs))
    step = max(1, len(pairs) // n)
    inp_new, inp_old = new_ids[::step][:n][None], old_ids[::step][:n][None]
    old.reset()
    new.reset()
    got, want = new(inp_new)[0][..., new_ids], old(inp_old)[0][..., old_ids]
    if not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
        raise UlmfitError(f"the converted model of {path} does not reproduce the original's predictions; "
                          "please report this checkpoint.")


# --- vocabularies --------------------------------------------------------------------------------------------------

def read_vocab(path: Path) -> list[str]:
    """A legacy vocabulary (read without running code), its older special-token spellings renamed to fastai's."""
    return fastai_specials(read_itos(path))


def fastai_specials(itos: list[str]) -> list[str]:
    """`itos` with older spellings of fastai's special tokens (`_unk_`, `xbos`, `t_up`, …) renamed to fastai's,
    where the vocabulary lacks fastai's own spelling; the rows stay where they are."""
    present = set(itos)
    rename = {}
    for token, spellings in SPECIAL_SPELLINGS.items():
        old = next((s for s in spellings if s in present), None)
        if token not in present and old is not None:
            rename[old] = token
    if rename:
        log.info("renamed the special tokens %s", ", ".join(f"{o} → {n}" for o, n in rename.items()))
    return [rename.get(t, t) for t in itos]


def _word_itos(old_itos: list[str]) -> list[str]:
    """fastai v2's special tokens first, in fastai's order, then every other token in its old order."""
    return SPECIAL_TOKENS + [t for t in old_itos if t not in SPECIAL_TOKENS]


def _sp_ids(ckpt: Checkpoint) -> tuple[list[str], dict[str, list[str]]]:
    """The SentencePiece pieces (the new vocabulary) and, per direction, the old token whose row each piece takes."""
    sp = load_sentencepiece(ckpt.spm)
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    head = pieces[: len(SPECIAL_TOKENS)]
    if head != _SP_SPECIALS and head != SPECIAL_TOKENS:
        raise UlmfitError(f"{ckpt.spm} does not start with fastai's special tokens (its first pieces are "
                          f"{' '.join(head)}); it was not trained by fastai's SentencePieceTokenizer.")
    sources = {}
    for direction, vocab in ckpt.vocabs.items():
        if direction not in ckpt.weights:
            continue
        known = set(read_vocab(vocab))
        sources[direction] = [
            p if p in known else SPECIAL_TOKENS[i] if i < len(SPECIAL_TOKENS) and SPECIAL_TOKENS[i] in known
            else "xxunk"  # what fastai's Numericalize gave a piece outside its vocabulary
            for i, p in enumerate(pieces)
        ]
        missing = sum(p not in known for p in pieces[len(SPECIAL_TOKENS):])
        if missing:
            log.info("%s: %d of %d pieces are not in the %s vocabulary and take the xxunk row", ckpt.spm.name,
                     missing, len(pieces), direction)
    return pieces, sources
