"""Importing older ULMFiT checkpoints as model directories: `ulmfit convert` and the catalogue's third-party entries.

The three formats, and where the facts about them come from:

- `fastai-wt103`: fastai's English WikiText-103 models, fastai's `URLs.WT103_FWD`/`URLs.WT103_BWD`
  (https://s3.amazonaws.com/fast-ai-modelzoo/wt103-fwd.tgz and wt103-bwd.tgz, fastai/data/external.py). Each
  archive holds one folder with the weights (`lstm_fwd.pth`/`lstm_bwd.pth`) and the pickled word list
  (`itos_wt103.pkl`); fastai's `language_model_learner` takes the folder's first `*.pth` and `*.pkl`. fastai v1
  wrote them: its AWD-LSTM state dict also holds the dropped-out copy `0.rnns.N.module.weight_hh_l0` beside
  `0.rnns.N.weight_hh_l0_raw` (fastai's `clean_raw_keys` drops it), and v1 ordered its special tokens
  `xxunk xxpad xxbos xxeos xxfld xxmaj xxup xxrep xxwrep` (fastai v1 text/transform.py). fastai v1's case rules
  were token rules on `str.isupper`, which this package's Unicode `replace_all_caps`/`replace_maj` match.
- `fastai-ulmfit`: the fastai v2 releases of github.com/floleuerer/fastai_ulmfit (README; fastai_ulmfit/pretrained.py;
  2_ulmfit_lm_pretrain.ipynb). A `.tgz` with `fwd/` and `bwd/` (each a `*model.pth` state dict from
  `Learner.save(with_opt=False)`, the pickled `dls.vocab` list `*vocab.pkl`, and `model.json` naming the
  tokenizer and its language) and `spm/spm.model` from fastai's `SentencePieceTokenizer`: fastai's special tokens
  as `▁xxunk`…`▁xxmaj` at ids 0-8 and `<unk>` at 9, trained on text through fastai's default rules (ASCII case
  rules, lower-casing). The vocabulary pickle orders the pieces by frequency (fastai's `make_vocab`), so the
  model's ids are not the SentencePiece ids. AWD-LSTM 400/1152/3, `drop_mult` 0.5.
- `thai2fit`: Charin Polpanumas's Thai Wikipedia model as PyThaiNLP distributes it (pythainlp-corpus
  `wiki_lm_lstm`/`wiki_itos_lstm` 0.32: `thwiki_model_lstm.pth`, `thwiki_itos.pkl`, also as `thwiki_itos.json`).
  fastai v1, 60,005 words, 400/1550/4 with its own dropouts (pythainlp/generate/thai2fit.py), saved together
  with its optimizer state.

How ids stay consistent. Word-level models get a `vocab.json` that starts with fastai v2's nine special tokens in
fastai's order; every other token keeps its relative order, and the embedding, its dropout copy, the tied decoder
and the decoder bias are permuted with the tokens (fastai's `match_embeds`). A special token the old vocabulary
lacks gets the mean row. SentencePiece models keep `spm.model` and take its ids: each piece gets the row of the
same piece in the old vocabulary (a special token's `▁xxbos` form is the one the text produced; its bare form
`xxpad` is the one fastai padded with), and a piece the old vocabulary lacks gets the row of `xxunk`, which is what
fastai fed the model for it. The converter then checks that both models give the same logits on the same tokens.

Pickles: weights go through `torch.load(weights_only=True)`; a file that needs arbitrary Python objects is refused
unless `allow_pickle=True`, which warns and then loads it. Vocabulary pickles go through an unpickler that loads
no classes at all, so a pickle that would run code is refused. Downloads are never loaded with `allow_pickle`.
"""
from __future__ import annotations

import json
import logging
import pickle
import re
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ulmfit.config import ARCH_KEYS, PretrainConfig
from ulmfit.card import render_card
from ulmfit.errors import UlmfitError
from ulmfit.files import atomic_write_text, file_digest
from ulmfit.langs import get_lang
from ulmfit.langs.rules import default_rules
from ulmfit.pretrain import modeldir
from ulmfit.pretrain.tokenizer import SP_MODEL, SPECIAL_TOKENS, WORD_VOCAB
from ulmfit.pretrain.train import model_config
from ulmfit.zoo.catalogue import ModelEntry

log = logging.getLogger(__name__)

ENCODER = "0.encoder.weight"
DECODER = "1.decoder.weight"
ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".tar", ".zip")
_SP_SPECIALS = ["\u2581" + t for t in SPECIAL_TOKENS]  # how fastai's SentencePieceTokenizer names them
_UNSUPPORTED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_FASTAI_DROPOUTS = {"output_p": 0.1, "hidden_p": 0.15, "input_p": 0.25, "embed_p": 0.02, "weight_p": 0.2}


@dataclass(frozen=True)
class LegacyFormat:
    """What a legacy format implies beyond its tensors: tokenizer, language, dropouts, rules, provenance."""

    name: str
    title: str
    tokenizer: str
    lang: str | None
    dropouts: dict[str, float]
    drop_mult: float
    homepage: str
    license: str
    rules: tuple[str, ...] | None  # by this package's rule names; None: its default word rules for the language
    corpus: dict[str, Any] | None  # None: the language's Wikipedia

    def text_rules(self, lang: str) -> list[str]:
        """The text rules the model was trained with (`ulmfit.langs.rules` names)."""
        return list(self.rules) if self.rules is not None else default_rules(get_lang(lang), "word")

    def corpus_for(self, lang: str) -> dict[str, Any]:
        return self.corpus if self.corpus is not None else {"source": {"type": "wikipedia-dump", "dbname": f"{lang}wiki"}}


FORMATS = {
    "fastai-wt103": LegacyFormat(
        "fastai-wt103", "fastai's WikiText-103 AWD-LSTM (fastai v1 model zoo)", "word", "en", _FASTAI_DROPOUTS, 1.0,
        "https://docs.fast.ai/text.models.awdlstm.html", "unknown", None, {"source": {"type": "wikitext-103"}}),
    "fastai-ulmfit": LegacyFormat(
        "fastai-ulmfit", "a fastai_ulmfit release (SentencePiece, fastai v2)", "sentencepiece", None,
        _FASTAI_DROPOUTS, 0.5, "https://github.com/floleuerer/fastai_ulmfit", "mit",
        # fastai v2's `defaults.text_proc_rules`, with fastai's own ASCII-only case rules.
        ("fix_html", "replace_rep", "replace_wrep", "spec_add_spaces", "rm_useless_spaces", "fastai_replace_all_caps",
         "fastai_replace_maj", "lowercase"), None),
    "thai2fit": LegacyFormat(
        "thai2fit", "thai2fit (PyThaiNLP's Thai Wikipedia AWD-LSTM)", "word", "th",
        {"output_p": 0.25, "hidden_p": 0.1, "input_p": 0.2, "embed_p": 0.02, "weight_p": 0.15}, 0.9,
        "https://github.com/cstorm125/thai2fit", "mit",
        # pythainlp's `pre_rules_th`/`post_rules_th` where this package has them: fastai's fix_html and space rules
        # and lower-casing (the Thai adapter's normalisation reorders vowels as `reorder_vowels` did). Its URL,
        # bracket and character-repetition rules and its own newmm dictionary are not replayed.
        ("fix_html", "spec_add_spaces", "rm_useless_spaces", "lowercase"),
        {"source": {"type": "wikipedia-dump", "dbname": "thwiki", "dump_date": "2019-02-17"}}),
}


@dataclass
class Checkpoint:
    """The files of one legacy checkpoint, found in a folder, an archive or beside a weights file."""

    format: LegacyFormat
    lang: str
    weights: dict[str, Path]  # direction -> .pth
    vocabs: dict[str, Path]  # direction -> itos (.pkl or .json)
    spm: Path | None
    inputs: dict[str, Path]  # name -> the files read (the archives, where there were some), for the record


def convert(path: Path | str, to: Path | str, format: str | None = None, lang: str | None = None,
            allow_pickle: bool = False) -> Path:
    """Import an older ULMFiT checkpoint (a folder, a .tgz/.zip archive, or its weights file) into the model
    directory `to`, which must not exist yet or be empty. `format` is `fastai-wt103`, `fastai-ulmfit` or `thai2fit`
    (detected when not given); `lang` overrides the language the checkpoint or its format implies.
    """
    return _convert(Path(path), Path(to), format, lang, allow_pickle, origin={})


def fetch_third_party(entry: ModelEntry, cache_dir: Path | str | None = None, local_files_only: bool = False) -> Path:
    """The model directory of a third-party catalogue entry: downloaded from its original location and converted
    once into `cache_dir/NAME` (default `~/.cache/ulmfit/third_party/NAME`); later calls only return the folder."""
    from ulmfit.pretrain.download import default_cache_dir, download

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir("third_party")
    target = root / entry.name
    if (target / modeldir.CONFIG).is_file():
        return target
    urls = entry.third_party["urls"]
    if local_files_only:
        raise UlmfitError(f"{entry.name} is not in the cache ({target} does not exist); run once online to download "
                          f"and convert it from {', '.join(urls.values())}.")
    downloads = root / ".downloads" / entry.name
    hint = "check the connection, or download the files yourself and run `ulmfit convert PATH --to DIR`"
    for file, url in urls.items():
        if Path(file).name != file or file in (".", ".."):
            raise UlmfitError(f"catalogue entry {entry.name!r}: third_party.urls key {file!r} must be a file name.")
        download(url, downloads / file, sha256=entry.sha256.get(file), hint=hint)
    try:
        _convert(downloads, target, entry.third_party["format"], entry.lang, allow_pickle=False,
                 origin={"catalogue_name": entry.name, "urls": dict(urls)})
    except UlmfitError as e:
        shutil.rmtree(downloads, ignore_errors=True)
        raise UlmfitError(f"{str(e).rstrip('.')}; the downloaded files of {entry.name} were deleted, so running "
                          "again downloads them anew.") from None
    shutil.rmtree(downloads, ignore_errors=True)
    got = modeldir.read_config(target)["directions"]
    if set(entry.directions) - set(got):
        log.warning("the catalogue lists %s for %s, but the download held %s", "+".join(entry.directions),
                    entry.name, "+".join(got))
    return target


# --- the conversion ----------------------------------------------------------------------------------------------

def _convert(path: Path, to: Path, format: str | None, lang: str | None, allow_pickle: bool, origin: dict) -> Path:
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
            ckpt = _find_checkpoint(path, Path(staging), format, lang)
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
    if fmt.tokenizer == "sentencepiece":
        itos, sources = _sp_ids(ckpt)
        shutil.copyfile(ckpt.spm, out / SP_MODEL)
        tok_file = out / SP_MODEL
    else:
        itos = _word_itos(_read_itos(ckpt.vocabs["fwd" if "fwd" in ckpt.vocabs else "bwd"]))
        sources = {d: itos for d in ckpt.weights}
        tok_file = out / WORD_VOCAB
        atomic_write_text(tok_file, json.dumps(itos, ensure_ascii=False, indent=0) + "\n")
    archs = {}
    for direction, weights in sorted(ckpt.weights.items()):
        old_itos = _read_itos(ckpt.vocabs[direction])
        model, archs[direction] = _converted_model(weights, old_itos, sources[direction], fmt, allow_pickle)
        modeldir.save_weights(model, out / direction / modeldir.WEIGHTS)
    if len({json.dumps(a, sort_keys=True) for a in archs.values()}) > 1:
        raise UlmfitError(f"the forward and backward models have different sizes ({archs}); convert each on its own.")
    config = _config(ckpt, next(iter(archs.values())), len(itos), tok_file, origin)
    atomic_write_text(out / "README.md", str(render_card(config, out.resolve().name)))
    modeldir.write_config(out, config)


def _config(ckpt: Checkpoint, arch: dict, vocab_size: int, tok_file: Path, origin: dict) -> dict:
    """config.json, assembled as `ulmfit pretrain` assembles it, plus the record of where the weights came from."""
    fmt = ckpt.format
    meta = {"vocab_size": vocab_size, "lang": ckpt.lang, "tokenizer": fmt.tokenizer, "tokenizer_file": tok_file.name,
            "rules": fmt.text_rules(ckpt.lang), "special_tokens": SPECIAL_TOKENS,
            "tokenizer_hash": "sha256:" + file_digest(tok_file)}
    return model_config(meta, PretrainConfig(**arch, drop_mult=fmt.drop_mult)) | {
        "directions": sorted(ckpt.weights),
        "corpus": fmt.corpus_for(ckpt.lang),
        "license": fmt.license,
        "converted_from": {"format": fmt.name, "title": fmt.title, **origin, "homepage": fmt.homepage,
                           "files": {name: file_digest(p) for name, p in sorted(ckpt.inputs.items())}},
    }


def _converted_model(weights: Path, old_itos: list[str], source_tokens: list[str], fmt: LegacyFormat,
                     allow_pickle: bool) -> tuple[torch.nn.Module, dict]:
    """The fastai 2.8 language model for one direction, its rows in the new id order; and its architecture.

    `source_tokens[i]` is the old token whose row becomes new id `i`.
    """
    from fastai.text.learner import clean_raw_keys, match_embeds

    state = clean_raw_keys(_load_state_dict(weights, allow_pickle))
    arch = _infer_arch(state, weights) | fmt.dropouts
    rows = state[ENCODER].shape[0]
    if rows != len(old_itos):
        raise UlmfitError(f"the vocabulary beside {weights.name} has {len(old_itos):,} tokens but its embedding has "
                          f"{rows:,} rows; the two files do not belong to the same model.")
    old = _load_into(modeldir.build_language_model({"arch": arch, "vocab_size": rows}), dict(state), weights)
    new = _load_into(modeldir.build_language_model({"arch": arch, "vocab_size": len(source_tokens)}),
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


# --- reading legacy files ------------------------------------------------------------------------------------------

class _Refused(pickle.UnpicklingError):
    pass


class _NoClassesUnpickler(pickle.Unpickler):
    """Unpickles plain data (lists, strings, numbers) and refuses every class or function a pickle names."""

    def find_class(self, module: str, name: str):
        raise _Refused(f"{module}.{name}")


def _read_itos(path: Path) -> list[str]:
    """A legacy vocabulary: a JSON list, or a pickled list of strings read without loading any class."""
    try:
        if path.suffix == ".json":
            itos = json.loads(path.read_text(encoding="utf-8"))
        else:
            with open(path, "rb") as f:
                itos = _NoClassesUnpickler(f).load()
    except _Refused as e:
        raise UlmfitError(f"{path} is not a plain list of tokens: it asks to load {e}, which could run code, so it "
                          "was refused; save the vocabulary as a JSON list of strings and convert that.") from None
    except (OSError, ValueError, EOFError, pickle.UnpicklingError, UnicodeDecodeError) as e:
        raise UlmfitError(f"{path} is not a readable vocabulary ({type(e).__name__}: {e}); it may be truncated or "
                          "corrupt, so download it again.") from None
    if not isinstance(itos, (list, tuple)) or not itos or not all(isinstance(t, str) for t in itos):
        raise UlmfitError(f"{path} is not a vocabulary: it must hold a non-empty list of strings.")
    return list(itos)


def _load_state_dict(path: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    """The tensors of a legacy weights file (a state dict, possibly with its optimizer, or a whole module)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):
            raise _unreadable(path, e) from None
        if not allow_pickle:
            needs = _UNSUPPORTED_GLOBAL.search(str(e))
            raise UlmfitError(f"{path} needs arbitrary Python objects{f' ({needs[1]})' if needs else ''} to load, "
                              "which can run code; if you trust where it came from, convert it with --allow-pickle."
                              ) from None
        log.warning("loading %s with full pickle (allow_pickle): this runs whatever code the file holds, so do it "
                    "only with files you trust", path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except (ImportError, AttributeError) as e2:
            raise UlmfitError(f"{path} needs Python code that is not installed to load ({e2}).") from None
        except Exception as e2:  # noqa: BLE001 - whatever a broken pickle raises
            raise _unreadable(path, e2) from None
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file raises anything from KeyError to OSError
        raise _unreadable(path, e) from None
    while isinstance(state, dict) and isinstance(state.get("model"), (dict, torch.nn.Module)):
        state = state["model"]  # saved with its optimizer: {"model": ..., "opt": ...}
    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UlmfitError(f"{path} does not hold a model state dict (a mapping of names to tensors).")
    return dict(state)


def _unreadable(path: Path, e: BaseException) -> UlmfitError:
    return UlmfitError(f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {str(e)[:200]}); it may "
                       "be truncated or corrupt, so download it again.")


# --- vocabularies --------------------------------------------------------------------------------------------------

def _word_itos(old_itos: list[str]) -> list[str]:
    """fastai v2's special tokens first, in fastai's order, then every other token in its old order."""
    return SPECIAL_TOKENS + [t for t in old_itos if t not in SPECIAL_TOKENS]


def _sp_ids(ckpt: Checkpoint) -> tuple[list[str], dict[str, list[str]]]:
    """The SentencePiece pieces (the new vocabulary) and, per direction, the old token whose row each piece takes."""
    import sentencepiece as spm

    try:
        sp = spm.SentencePieceProcessor(model_file=str(ckpt.spm))
    except (RuntimeError, OSError) as e:
        raise UlmfitError(f"{ckpt.spm} is not a readable SentencePiece model ({e}).") from None
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    head = pieces[: len(SPECIAL_TOKENS)]
    if head != _SP_SPECIALS and head != SPECIAL_TOKENS:
        raise UlmfitError(f"{ckpt.spm} does not start with fastai's special tokens (its first pieces are "
                          f"{' '.join(head)}); it was not trained by fastai's SentencePieceTokenizer.")
    sources = {}
    for direction, vocab in ckpt.vocabs.items():
        if direction not in ckpt.weights:
            continue
        known = set(_read_itos(vocab))
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


# --- finding the files of a checkpoint ---------------------------------------------------------------------------

def _find_checkpoint(path: Path, staging: Path, format: str | None, lang: str | None) -> Checkpoint:
    files, archives = _gather(path, staging)
    weights, vocabs = _by_direction(files, _is_weights, path), _by_direction(files, _is_vocab, path)
    if not weights:
        raise UlmfitError(f"no weights file (.pth) in {path}; give the checkpoint's folder, archive or .pth file.")
    if not vocabs:
        raise UlmfitError(f"no vocabulary (itos*.pkl, *vocab.pkl or a JSON list) beside the weights in {path}.")
    for d in weights:
        if d not in vocabs:  # one vocabulary for both directions
            vocabs[d] = next(iter(vocabs.values()))
    spms = {name: f for name, f in files.items() if f.name == SP_MODEL}
    used = {name: f for name, f in files.items() if f in (*weights.values(), *vocabs.values(), *spms.values())}
    named = " ".join(used).lower()
    fmt = FORMATS[format or ("fastai-ulmfit" if spms else "thai2fit" if "thwiki" in named or lang == "th"
                             else "fastai-wt103")]
    if fmt.tokenizer == "sentencepiece" and len(spms) != 1:
        raise UlmfitError(f"{fmt.name} needs exactly one spm.model in {path}, found {len(spms)}.")
    lang = lang or fmt.lang or _model_json_lang(files.values())
    if lang is None:
        raise UlmfitError(f"{path} does not say its language; give it with --lang, e.g. --lang de.")
    if fmt.name == "thai2fit" and lang != "th":
        raise UlmfitError(f"thai2fit is a Thai model; drop --lang {lang} or give another --format.")
    get_lang(lang)  # a clear error for an unknown code
    inputs = archives | ({} if archives else used)
    return Checkpoint(fmt, lang, weights, vocabs, next(iter(spms.values()), None), inputs)


def _gather(path: Path, staging: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """The candidate files by a name relative to what the user gave (archives unpacked into `staging`, their
    files named ARCHIVE-STEM/MEMBER), and the archives read."""
    if path.is_file() and not _is_archive(path):
        # A weights file: its vocabulary lies beside it, among whatever else that folder holds.
        beside = [f for f in sorted(path.parent.iterdir()) if f == path or (f.is_file() and not _is_weights(f))]
        return {f.name: f for f in beside}, {}
    found = [path] if path.is_file() else sorted(f for f in path.rglob("*") if f.is_file())
    files, archives = {}, {}
    for f in found:
        if not _is_archive(f):
            files[str(f.relative_to(path))] = f
            continue
        archives[f.name] = f
        dest = staging / f"{len(archives)}-{_stem(f)}"
        _unpack(f, dest)
        files |= {str(Path(_stem(f)) / m.relative_to(dest)): m for m in sorted(dest.rglob("*")) if m.is_file()}
    return files, archives


def _unpack(archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                z.extractall(dest)  # zipfile drops absolute paths and '..' from member names
        else:
            with tarfile.open(archive) as t:
                t.extractall(dest, filter="data")  # refuses links and paths that leave `dest`
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
        raise UlmfitError(f"{archive} is not a complete archive ({type(e).__name__}: {e}); it may be a partial or "
                          "corrupt download, so download it again.") from None


def _by_direction(files: dict[str, Path], want, where: Path) -> dict[str, Path]:
    """The one file per direction that `want` accepts; among several, those named itos/vocab/model are preferred."""
    found: dict[str, list[str]] = {}
    for name, f in files.items():
        if want(f):
            found.setdefault(_direction(name), []).append(name)
    chosen = {}
    for d, names in found.items():
        if len(names) > 1:
            names = [n for n in names if re.search(r"itos|vocab|model", Path(n).name.lower())] or names
        if len(names) > 1:
            raise UlmfitError(f"{where} holds several {d} candidates ({', '.join(names)}); give the folder or "
                              "file of the one checkpoint to convert.")
        chosen[d] = files[names[0]]
    return chosen


def _direction(name: str) -> str:
    """`bwd` for a file in a folder or with a name that says backward (wt103-bwd/, bwd/, lstm_bwd.pth), else `fwd`."""
    return "bwd" if any("bwd" in part.lower() or "backward" in part.lower() for part in Path(name).parts) else "fwd"


def _is_weights(f: Path) -> bool:
    return f.suffix == ".pth" and not f.stem.endswith("encoder")


def _is_vocab(f: Path) -> bool:
    name = f.name.lower()
    return f.suffix == ".pkl" or (f.suffix == ".json" and ("itos" in name or "vocab" in name))


def _is_archive(f: Path) -> bool:
    return f.name.lower().endswith(ARCHIVE_SUFFIXES)


def _stem(archive: Path) -> str:
    return next(archive.name[: -len(s)] for s in ARCHIVE_SUFFIXES if archive.name.lower().endswith(s))


def _model_json_lang(files) -> str | None:
    """The language a fastai_ulmfit `model.json` gives its tokenizer, if there is one."""
    for f in files:
        if f.name == "model.json":
            try:
                lang = json.loads(f.read_text(encoding="utf-8"))["tokenizer"]["params"]["lang"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if isinstance(lang, str):
                return lang
    return None
