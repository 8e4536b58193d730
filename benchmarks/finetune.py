"""ULMFiT stages 2 and 3: fine-tune a language model on a task's text, then train classifiers on its encoder.

Stage 2 reads the text of every split (labels left out) and the task's unlabelled text as one token stream, the
way pretraining does (`StreamLoader` over an id file), and fine-tunes the language model with fastai's recipe:
one cycle with only the embeddings and decoder trainable, then cycles with everything trainable. A word-level
model is first moved into the task's own vocabulary (`zoo.remap`: new words start from the mean embedding); a
SentencePiece model keeps its vocabulary.

Stage 3 puts the fine-tuned encoder into fastai's text classifier (`get_text_classifier`: `SentenceEncoder` runs
long documents through the encoder `bptt` tokens at a time (BPT3C) and the head concat-pools the last, max and
mean states) and trains it with gradual unfreezing (the head first, then one more layer group each step),
discriminative learning rates (÷`lr_decay` per layer group) and one-cycle schedules. Batches are padded id
sequences of similar length (fastai's `SortedDL` and `pad_input_chunk`).

Both stages run for each direction; the backward model reads every text reversed. `pretrained=False` runs the same
stages from a randomly initialised model of the same architecture and tokenizer: the ablation that measures
what pretraining brings. The result is a classifier directory (see `classifier.py`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from fastai.callback.core import Callback

from ulmfit import __version__
from ulmfit.benchmarks import classifier as clf
from ulmfit.benchmarks.data import ClassificationData, LabelledTexts, check_data
from ulmfit.config import CONFIGS as PRETRAIN_CONFIGS
from ulmfit.config import OptimSettings, check_range, load_config
from ulmfit.errors import UlmfitError
from ulmfit.files import output_lock, read_json
from ulmfit.langs import get_lang
from ulmfit.langs.rules import default_rules
from ulmfit.pretrain.card import license_of, render_card
from ulmfit.pretrain.loader import StreamLoader
from ulmfit.pretrain.modeldir import (
    CLASSIFIER_FORMAT,
    CLASSIFIER_FORMAT_VERSION,
    CONFIG,
    DIRECTIONS,
    FORMAT,
    SIZE_KEYS,
    ModelDir,
    build_classifier,
    build_language_model,
    language_model_config,
)
from ulmfit.pretrain.tokenizer import PAD, WORD_VOCAB, TextTokenizer, ids_dtype
from ulmfit.training import build_learner, finite_or_none, release_freed_memory, select_device

log = logging.getLogger(__name__)


@dataclass
class FinetuneConfig(OptimSettings):
    """Every knob of stages 2 and 3. The defaults are fastai's ULMFiT recipe (the `paper` config); the optimiser
    settings (momentum, Adam's beta2, weight decay, AR/TAR, mixed precision, seed) are pretraining's."""

    # stage 2: language-model fine-tuning on the task's text
    lm_bs: int = 64
    lm_bptt: int = 70
    lm_drop_mult: float = 0.5
    lm_lr_frozen: float = 2e-2  # one cycle with only the embeddings and decoder trainable
    lm_epochs_frozen: int = 1
    lm_lr: float = 2e-3  # then everything trainable
    lm_epochs: int = 10
    lm_valid_frac: float = 0.1  # share of the task's texts held out to report the fine-tuned LM's perplexity
    # stage 3: the classifier
    clas_bs: int = 64
    clas_bptt: int = 72
    clas_max_len: int = 72 * 20  # the encoder outputs pooled: the last max_len tokens of a document
    clas_drop_mult: float = 0.5
    # gradual unfreezing: step 1 trains the head, each next step one more layer group, the last step everything
    clas_lrs: tuple[float, ...] = (2e-2, 1e-2, 5e-3, 1e-3)
    clas_epochs: tuple[int, ...] = (1, 1, 1, 2)
    lr_decay: float = 2.6  # discriminative learning rates: each lower layer group gets the rate above ÷ this
    label_smoothing: float = 0.0  # single-label tasks only
    valid_frac: float = 0.1  # share of train held out for validation when the task has no valid split
    max_tokens_per_text: int = clf.MAX_TOKENS_PER_TEXT  # both stages read the first N tokens of a longer text
    # the task vocabulary of a word-level model
    max_vocab: int = 60000
    min_freq: int = 2
    # the architecture (a pretraining config name) when there is no language model at all (lm=None)
    arch: str = "paper"
    clip: float = 0.0  # fastai's fine-tuning recipe clips no gradients

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self, ["lm_bs", "lm_bptt", "clas_bs", "clas_bptt", "clas_max_len", "max_vocab", "min_freq"], 1)
        check_range(self, ["lm_epochs_frozen", "lm_epochs", "clas_epochs", "lm_drop_mult", "clas_drop_mult"], 0)
        check_range(self, ["lm_lr_frozen", "lm_lr", "clas_lrs", "lr_decay"], 0, above=True)
        check_range(self, ["lm_valid_frac", "valid_frac", "label_smoothing"], 0, 1, below=True)


FINETUNE_CONFIGS: dict[str, dict[str, Any]] = {
    # CPU demos and tests: a few short cycles, short sequences
    "tiny": dict(lm_bs=16, lm_bptt=35, lm_lr_frozen=2e-2, lm_lr=1e-2, lm_epochs=1, clas_bs=16, clas_bptt=36,
                 clas_max_len=36 * 4, clas_lrs=(4e-2, 2e-2, 1e-2, 1e-2), clas_epochs=(1, 1, 1, 6), arch="tiny"),
    "paper": dict(),
}


def load_finetune_config(name: str | Path = "paper",
                         overrides: dict[str, Any] | list[str] | None = None) -> FinetuneConfig:
    """A named fine-tuning config (`tiny`, `paper`) or a YAML file, with `key=value` overrides."""
    cfg = load_config(name, overrides, kind=FinetuneConfig, presets=FINETUNE_CONFIGS)
    if len(cfg.clas_lrs) != len(cfg.clas_epochs) or not cfg.clas_lrs:
        raise UlmfitError(f"clas_lrs and clas_epochs give one value per unfreezing step and must be as long as each "
                          f"other (they have {len(cfg.clas_lrs)} and {len(cfg.clas_epochs)}).")
    if cfg.arch not in PRETRAIN_CONFIGS:
        raise UlmfitError(f"arch names a pretraining config ({', '.join(PRETRAIN_CONFIGS)}), not '{cfg.arch}'.")
    clf.check_max_tokens(cfg.max_tokens_per_text)
    return cfg


def config_for_device(name: str | Path | None, device: str | None = None) -> tuple[str, str | None]:
    """The fine-tuning config to run: `name` when one is asked for; else `paper` (fastai's ULMFiT recipe) on a GPU
    and `tiny` on a CPU, where the paper's recipe takes an hour or more for a task of a few thousand texts.
    Returns the config and, when it was chosen here, the reason, for the user to see."""
    if name is not None:
        return str(name), None
    dev = select_device(device)
    if dev.type == "cuda":
        return "paper", f"fastai's ULMFiT recipe, on {dev}"
    return "tiny", ("a few short cycles, as there is no GPU here: the paper's recipe takes an hour or more per task "
                    "on a CPU; pass --config paper to run it anyway")


def finetune(lm: str | Path | ModelDir | None, data: ClassificationData, out: Path | str, config: FinetuneConfig,
             directions: Sequence[str] | str = ("fwd", "bwd"), pretrained: bool = True,
             device: str | None = None) -> Path:
    """Fine-tune `lm` on `data`'s text, train the classifiers, write the classifier directory `out`; returns it.

    `lm` is a catalogue name, `hf-hub:ORG/NAME` or a model directory. `pretrained=False` keeps its architecture
    and tokenizer but starts from random weights; `lm=None` (only with `pretrained=False`) builds a word-level
    vocabulary from the task's text with the language's tokenizer and uses the `arch` config's architecture.
    `out` is built under `OUT.partial` and renamed when complete, and locked while the run lasts. A run killed
    at any moment leaves at most `OUT.partial`, which the same command clears and redoes; once `out` is complete,
    the same command (same language model, data and settings) keeps it and returns at once.
    """
    out = Path(out)
    directions = _directions(directions)
    with output_lock(out):
        data = _checked(data, config)
        start = _starting_point(lm, data.lang, pretrained, config)
        directions = _available(directions, start)
        inputs = _inputs_digest(start, data, config, directions)
        finished = read_json(out / CONFIG)
        if isinstance(finished, dict) and finished.get("inputs") == inputs:
            log.info("%s already holds the classifier of these inputs and settings; keeping it", out)
            return out
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise UlmfitError(f"{out} already exists; choose a new output directory or remove it.")
        dev = select_device(device)
        tmp = out.with_name(out.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)  # left by a run that was killed: no other run holds it (the lock)
        tmp.mkdir(parents=True)
        try:
            _build(start, data, ModelDir(tmp, {}), out.resolve().name, config, directions, dev, inputs)
            if out.exists():
                out.rmdir()
            tmp.rename(out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    log.info("classifier directory ready: %s", out)
    return out


def _inputs_digest(start: _Start, data: ClassificationData, cfg: FinetuneConfig, directions: list[str]) -> str:
    """A sha256 of everything a classifier is made from: the language model's config (its metrics and tokenizer
    hash tell one training from another), the data, the settings and the package version."""
    digest = hashlib.sha256()
    for part in (__version__, start.lm_config, start.pretrained, cfg.to_dict(), directions, data.lang, data.labels,
                 data.multi_label, data.unlabelled):
        digest.update(json.dumps(part, sort_keys=True, ensure_ascii=False, default=str).encode())
    for split in (data.train, data.valid, data.test):
        for row in zip(split.texts, split.labels) if split is not None else [None]:
            digest.update(json.dumps(row, ensure_ascii=False).encode())
    return "sha256:" + digest.hexdigest()


# --- where the language model comes from --------------------------------------------------------------------------

def open_lm(lm: str | Path | ModelDir) -> ModelDir:
    """The language model a spec names (a catalogue name, `hf-hub:ORG/NAME`, `ORG/NAME` or a model directory),
    downloaded where needed; a `ModelDir` is taken as it is."""
    if isinstance(lm, ModelDir):
        return lm
    from ulmfit.zoo.pretrained import open_model

    return open_model(lm, kind=FORMAT)


@dataclass
class _Start:
    """The language model to start from (None without one), its config, what the card says of it."""

    lm: ModelDir | None
    lm_config: dict
    pretrained: bool
    info: dict


def _starting_point(lm: str | Path | ModelDir | None, lang: str, pretrained: bool, cfg: FinetuneConfig) -> _Start:
    if lm is None:
        if pretrained:
            raise UlmfitError("give a language model to start from (a catalogue name, hf-hub:ORG/NAME or a model "
                              "directory), or train without pretraining (--no-pretrain).")
        language = get_lang(lang)
        config = language_model_config(load_config(cfg.arch), None, language.code, {
            "type": "word", "file": WORD_VOCAB, "rules": default_rules(language, "word")})
        return _Start(None, config, False, {"spec": None, "pretrained": False, "arch": config["arch"]})
    model = open_lm(lm)
    config = model.config
    if get_lang(config["lang"]).code != get_lang(lang).code:
        raise UlmfitError(f"the language model {model.spec} is for '{config['lang']}' but the task is in '{lang}'; "
                          "use a language model of the task's language.")
    info = {"spec": model.spec, "repo_id": model.repo_id, "pretrained": pretrained, "lang": config["lang"],
            "tokenizer": config["tokenizer"]["type"], "vocab_size": config["vocab_size"], "arch": config["arch"],
            "corpus": config.get("corpus"), "metrics": config.get("metrics")}
    return _Start(model, config, pretrained, info)


# --- the run ------------------------------------------------------------------------------------------------------

def _build(start: _Start, data: ClassificationData, out: ModelDir, name: str, cfg: FinetuneConfig,
           directions: list[str], dev: torch.device, inputs: str = "") -> None:
    from fastai.torch_core import set_seed

    valid, valid_from_train = data.valid, False
    train = data.train
    if valid is None or len(valid) == 0:
        train, valid = _hold_out(train, cfg.valid_frac, cfg.seed)
        valid_from_train = True
        log.info("the task has no valid split: %d train texts are held out for validation", len(valid))
    lm_texts = [t for split in (data.train, data.valid, data.test) if split for t in split.texts] + list(data.unlabelled)

    tokenizer, tok_spec, counts = _task_tokenizer(start, lm_texts, out, cfg)
    vocab_size = len(tokenizer)
    dtype = ids_dtype(vocab_size)
    encode = partial(clf.encode_texts, tokenizer, max_tokens=cfg.max_tokens_per_text, dtype=dtype)
    train_ids, valid_ids = encode(train.texts, what="train texts"), encode(valid.texts, what="valid texts")
    other_ids = encode([t for t in ([*data.test.texts] if data.test else []) + list(data.unlabelled)],
                       what="test and unlabelled texts")
    unknown_rate = clf.UnknownTokens(tokenizer).rate(train_ids)
    log.info("train text: %.1f%% of the tokens are unknown to the tokenizer", 100 * unknown_rate)
    if unknown_rate > clf.MISMATCH_MARGIN:
        log.warning("%.0f%% of the train text's tokens are unknown to the %s tokenizer: is the text in %s?",
                    100 * unknown_rate, start.lm_config["lang"], get_lang(start.lm_config["lang"]).name)

    work = out.path / "work"
    lm_tokens = _write_lm_stream(work, [*train_ids, *valid_ids, *other_ids], cfg)
    config = {
        "format": CLASSIFIER_FORMAT,
        "format_version": CLASSIFIER_FORMAT_VERSION,
        "lang": start.lm_config["lang"],
        "tokenizer": tok_spec,
        "architecture": "AWD_LSTM",
        "arch": {k: start.lm_config["arch"][k] for k in SIZE_KEYS},
        "vocab_size": vocab_size,
        "head": {"seq_len": cfg.clas_bptt, "max_len": cfg.clas_max_len, "drop_mult": cfg.clas_drop_mult,
                 "max_tokens_per_text": cfg.max_tokens_per_text},
        "labels": list(data.labels),
        "multi_label": data.multi_label,
        "directions": directions,
        "lm": start.info,
        "license": license_of(start.lm_config),  # the weights derive from the language model's
        "finetune": cfg.to_dict(),
        "data": {"train": len(train), "valid": len(valid), "valid_from_train": valid_from_train,
                 "test": len(data.test) if data.test else 0, "unlabelled": len(data.unlabelled),
                 "dropped": dict(data.dropped), "lm_tokens": lm_tokens, "unknown_rate": round(unknown_rate, 6)},
        "eval_results": [],
        "inputs": inputs,  # lets the same command find this classifier finished
    }
    targets = {"train": clf.targets_array(train.labels, data.labels, data.multi_label),
               "valid": clf.targets_array(valid.labels, data.labels, data.multi_label)}
    history: list[dict] = []
    models = {}
    for i, d in enumerate(directions):
        set_seed(cfg.seed + i)
        lm_model = _initial_lm(start, d, tokenizer, counts, vocab_size, cfg, config)
        encoder = _fit_language_model(lm_model, work, dtype, d, cfg, dev, history)
        models[d] = _fit_classifier(encoder, config, (train_ids, targets["train"]), (valid_ids, targets["valid"]),
                                    d, cfg, dev, history)
    classifier = clf.Classifier(models, tokenizer, config)
    result = classifier.score_ids(valid_ids, targets["valid"])
    config["metrics"] = {k: {m: round(v, 6) for m, v in result[k].items()} for k in (*directions, clf.ENSEMBLE)}
    for k, m in config["metrics"].items():
        if k != clf.ENSEMBLE or len(directions) > 1:  # one direction's ensemble is that direction
            log.info("valid %s: accuracy %.4f, macro F1 %.4f", k, m["accuracy"], m["macro_f1"])
    shutil.rmtree(work)
    for d, model in models.items():
        out.save_weights(d, model.cpu())
    out.write_metrics({"history": history, "valid": config["metrics"]})
    out.finish(config, render_card(config, name))


def _hold_out(train: LabelledTexts, frac: float, seed: int) -> tuple[LabelledTexts, LabelledTexts]:
    order = np.random.default_rng(seed).permutation(len(train))
    n = max(1, round(frac * len(train)))
    if n >= len(train):
        raise UlmfitError(f"the task has {len(train)} train texts and no valid split: too few to hold some out; "
                          "give a valid split.")
    pick = lambda idx: LabelledTexts([train.texts[i] for i in idx], [train.labels[i] for i in idx])  # noqa: E731
    return pick(sorted(order[n:])), pick(sorted(order[:n]))


def _task_tokenizer(start: _Start, texts: list[str], out: ModelDir,
                    cfg: FinetuneConfig) -> tuple[TextTokenizer, dict, Any]:
    """The classifier's tokenizer, written into `out`: the model's SentencePiece file, or a task vocabulary
    (fastai's `make_vocab` over the task's words, tokenized with the model's rules)."""
    spec = dict(start.lm_config["tokenizer"])
    lang = get_lang(start.lm_config["lang"])
    if spec["type"] == "sentencepiece":
        spec |= out.write_tokenizer("sentencepiece", start.lm.tokenizer_file)
        return TextTokenizer("sentencepiece", lang, spec["rules"], out.path / spec["file"]), spec, None
    from ulmfit.zoo.remap import task_vocab

    itos, counts = task_vocab(texts, start.lm_config, cfg.max_vocab, cfg.min_freq)
    spec |= out.write_tokenizer("word", itos)
    log.info("task vocabulary: %d tokens from %d texts (min_freq %d)", len(itos), len(texts), cfg.min_freq)
    return TextTokenizer("word", lang, spec["rules"], out.path / spec["file"]), spec, counts


def _write_lm_stream(work: Path, docs: list[np.ndarray], cfg: FinetuneConfig) -> dict:
    """The task's texts as two flat id files (train, valid) for `StreamLoader`, each document opened by xxbos."""
    work.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(cfg.seed).permutation(len(docs))
    n_valid = max(1, round(cfg.lm_valid_frac * len(docs)))
    tokens = {}
    for split, idx in (("valid", order[:n_valid]), ("train", order[n_valid:])):
        with (work / f"lm-{split}.bin").open("wb") as f:
            for i in sorted(idx):
                docs[i].tofile(f)
        tokens[split] = int(sum(len(docs[i]) for i in idx))
    if tokens["train"] < 4 * cfg.lm_bptt or tokens["valid"] < 2 * cfg.lm_bptt:
        raise UlmfitError(f"the task's text is too short to fine-tune the language model on ({tokens['train']:,} "
                          f"train and {tokens['valid']:,} valid tokens); lower lm_bptt or add unlabelled text.")
    return tokens


def _initial_lm(start: _Start, direction: str, tokenizer: TextTokenizer, counts, vocab_size: int,
                cfg: FinetuneConfig, config: dict) -> torch.nn.Module:
    """The stage-2 starting model: the pretrained weights (moved into the task vocabulary for word-level models),
    or random ones of the same shape."""
    model = build_language_model(start.lm_config | {"vocab_size": vocab_size, "drop_mult": cfg.lm_drop_mult})
    if not start.pretrained:
        return model
    if tokenizer.kind == "word":
        from ulmfit.zoo.remap import remap_language_model

        pretrained, coverage = remap_language_model(start.lm, direction, tokenizer.itos, counts)
        config["lm"]["coverage"] = dict(vars(coverage), token_share=round(coverage.token_share, 6),
                                        occurrence_share=finite_or_none(coverage.occurrence_share))
        log.info("%s model: %s", direction, coverage)
    else:
        pretrained = start.lm.load_language_model(direction)
    model.load_state_dict(pretrained.state_dict())
    return model


# --- training -----------------------------------------------------------------------------------------------------

def _fit(learn, stage: str, direction: str, epochs: int, lr, history: list[dict], knobs: str) -> None:
    if epochs <= 0:
        return
    try:
        learn.fit_one_cycle(epochs, lr, cbs=[EpochRows(stage, direction, history)])
    except torch.cuda.OutOfMemoryError:
        raise UlmfitError(f"the GPU ran out of memory in stage {stage}; lower {knobs} (--set ...).") from None


class EpochRows(Callback):
    """Record (and log) one row per epoch: stage, direction, epoch, losses, metrics, seconds."""

    order = 70  # after the Recorder (50) has the epoch's values

    def __init__(self, stage: str, direction: str, history: list[dict]):
        self.stage, self.direction, self.history = stage, direction, history

    def before_epoch(self) -> None:
        self.start = time.perf_counter()
        if hasattr(self.learn.dls.train, "set_epoch"):  # a fresh stream offset every epoch of every stage
            self.learn.dls.train.set_epoch(len(self.history))

    def after_epoch(self) -> None:
        values = dict(zip(self.learn.recorder.metric_names, self.learn.recorder.log))
        row = {"stage": self.stage, "direction": self.direction, "epoch": self.epoch}
        row |= {k: finite_or_none(v) for k, v in values.items() if k not in ("epoch", "time")}
        row["seconds"] = round(time.perf_counter() - self.start, 2)
        self.history.append(row)
        release_freed_memory()
        log.info("%s %s epoch %d: %s", self.direction, self.stage, self.epoch,
                 ", ".join(f"{k} {v:.4f}" for k, v in row.items() if isinstance(v, float) and k != "seconds"))


def _fit_language_model(model: torch.nn.Module, work: Path, dtype: np.dtype, direction: str, cfg: FinetuneConfig,
                        dev: torch.device, history: list[dict]) -> dict:
    """Stage 2; returns the fine-tuned encoder's state dict."""
    from fastai.data.core import DataLoaders
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import Perplexity, accuracy
    from fastai.text.models.awdlstm import awd_lstm_lm_split

    backwards = direction == "bwd"
    sizes = {s: (work / f"lm-{s}.bin").stat().st_size // dtype.itemsize for s in ("train", "valid")}
    train_bs = max(1, min(cfg.lm_bs, sizes["train"] // (4 * cfg.lm_bptt)))
    valid_bs = max(1, min(cfg.lm_bs, sizes["valid"] // (2 * cfg.lm_bptt)))
    train_dl = StreamLoader(work / "lm-train.bin", dtype.name, train_bs, cfg.lm_bptt, train=True,
                            backwards=backwards, seed=cfg.seed, device=dev)
    valid_dl = StreamLoader(work / "lm-valid.bin", dtype.name, valid_bs, cfg.lm_bptt, train=False,
                            backwards=backwards, device=dev)
    learn = build_learner(DataLoaders(train_dl, valid_dl, device=dev), model, cfg, dev, path=work,
                          loss_func=CrossEntropyLossFlat(), metrics=[accuracy, Perplexity()],
                          splitter=awd_lstm_lm_split)
    knobs = "lm_bs or lm_bptt"
    learn.freeze()
    _fit(learn, "lm-frozen", direction, cfg.lm_epochs_frozen, cfg.lm_lr_frozen, history, knobs)
    learn.unfreeze()
    _fit(learn, "lm", direction, cfg.lm_epochs, cfg.lm_lr, history, knobs)
    return learn.model[0].state_dict()


class _Texts:
    """Padded-batch items for `SortedDL`: (ids, target), ids reversed for the backward model."""

    def __init__(self, ids: list[np.ndarray], targets: np.ndarray, backwards: bool):
        self.ids, self.targets, self.backwards = ids, targets, backwards

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        x = torch.from_numpy(self.ids[i].astype(np.int64))
        return (x.flip(0) if self.backwards else x), torch.as_tensor(self.targets[i])


def _fit_classifier(encoder: dict, config: dict, train: tuple, valid: tuple, direction: str, cfg: FinetuneConfig,
                    dev: torch.device, history: list[dict]) -> torch.nn.Module:
    """Stage 3: the classifier around the fine-tuned encoder, trained with gradual unfreezing."""
    from fastai.data.core import DataLoaders
    from fastai.losses import BCEWithLogitsLossFlat, CrossEntropyLossFlat, LabelSmoothingCrossEntropyFlat
    from fastai.metrics import AccumMetric
    from fastai.text.data import SortedDL, pad_input_chunk
    from fastai.text.models.awdlstm import awd_lstm_clas_split

    multi = config["multi_label"]
    model = build_classifier(config)
    model[0].module.load_state_dict(encoder)
    pad = partial(pad_input_chunk, pad_idx=PAD, pad_first=True, seq_len=cfg.clas_bptt)

    def loader(part: tuple, shuffle: bool, bs: int) -> SortedDL:
        ids, targets = part
        return SortedDL(_Texts(ids, targets, direction == "bwd"), res=[len(x) for x in ids], bs=bs,
                        shuffle=shuffle, drop_last=shuffle and len(ids) > bs, before_batch=pad, num_workers=0,
                        device=dev)

    dls = DataLoaders(loader(train, True, cfg.clas_bs), loader(valid, False, 2 * cfg.clas_bs), device=dev)
    if multi:
        loss = BCEWithLogitsLossFlat()
    elif cfg.label_smoothing:
        loss = LabelSmoothingCrossEntropyFlat(eps=cfg.label_smoothing)
    else:
        loss = CrossEntropyLossFlat()
    metrics = [AccumMetric(partial(_epoch_score, name, multi), flatten=False, name=name)
               for name in ("accuracy", "macro_f1")]
    learn = build_learner(dls, model, cfg, dev, loss_func=loss, metrics=metrics, splitter=awd_lstm_clas_split)
    groups = len(learn.opt.param_lists)
    for step, (lr, epochs) in enumerate(zip(cfg.clas_lrs, cfg.clas_epochs)):
        if step == len(cfg.clas_lrs) - 1 or step + 1 >= groups:
            learn.unfreeze()
        else:
            learn.freeze_to(-(step + 1))
        lrs = lr if step == 0 else slice(lr / cfg.lr_decay ** (groups - 1), lr)
        _fit(learn, f"clas-{step + 1}", direction, epochs, lrs, history, "clas_bs or clas_max_len")
    return learn.model.eval()


def _epoch_score(name: str, multi_label: bool, preds: torch.Tensor, targs: torch.Tensor) -> float:
    logits = preds.float()
    probs = torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)
    return clf.scores(targs.cpu().numpy(), probs.cpu().numpy(), multi_label)[name]


# --- input checks -------------------------------------------------------------------------------------------------

def _directions(directions: Sequence[str] | str) -> list[str]:
    if isinstance(directions, str):
        directions = {"both": ["fwd", "bwd"]}.get(directions, [directions])
    bad = [d for d in directions if d not in DIRECTIONS]
    if bad or not directions:
        raise UlmfitError(f"direction must be fwd, bwd or both, not {', '.join(bad) or 'nothing'}.")
    return list(dict.fromkeys(directions))


def _available(directions: list[str], start: _Start) -> list[str]:
    """The asked directions the language model has (a model pretrained with `--direction fwd` has no backward
    one): said before any training, and an error when it has none of them."""
    if start.lm is None or not start.pretrained:
        return directions
    have = [d for d in directions if d in start.lm.directions]
    if not have:
        raise UlmfitError(f"the language model {start.lm.spec} has no {' or '.join(directions)} model (it has: "
                          f"{', '.join(start.lm.directions) or 'none'}); ask for --direction "
                          f"{start.lm.directions[0] if start.lm.directions else 'fwd'}.")
    if len(have) < len(directions):
        log.warning("the language model %s has only %s: training %s only", start.lm.spec, "+".join(have),
                    "+".join(have))
    return have


def _checked(data: ClassificationData, cfg: FinetuneConfig) -> ClassificationData:
    """The task registry's `check_data` (drops and counts empty rows, refuses unusable labels), plus what only
    training cares about."""
    if data.multi_label and cfg.label_smoothing:
        raise UlmfitError("label_smoothing applies to single-label tasks only; set label_smoothing=0.")
    data = check_data(data)
    unlabelled = [t for t in data.unlabelled if isinstance(t, str) and t.strip()]
    if len(unlabelled) < len(data.unlabelled):
        log.warning("unlabelled text: %d of %d texts are empty and were left out",
                    len(data.unlabelled) - len(unlabelled), len(data.unlabelled))
        data = replace(data, unlabelled=unlabelled)
    return data
