"""`ulmfit pretrain`: forward and backward AWD-LSTM language models on a prepared corpus.

A fastai `Learner` (built by `ulmfit.training`) does the training: fastai's one-cycle schedule, AdamW, AR/TAR
through `RNNRegularizer`, gradient clipping, mixed precision on GPU, DDP under `torchrun`. This module feeds it
`StreamLoader` batches and adds what a long run needs: checkpoints every epoch and on a time budget or Ctrl-C,
exact resumption (fastai's `start_epoch`, plus the batch position, hidden state and RNG within an epoch),
per-epoch metrics, and the model directory at the end.
"""
from __future__ import annotations

import contextlib
import csv
import logging
import signal
import time
from pathlib import Path
from typing import Iterator

import torch
from fastai.callback.core import Callback, CancelFitException

from ulmfit.config import PretrainConfig
from ulmfit.errors import UlmfitError
from ulmfit.files import read_json, write_json
from ulmfit.pretrain.card import render_card
from ulmfit.pretrain.corpus import Corpus
from ulmfit.pretrain.loader import StreamLoader
from ulmfit.pretrain.modeldir import DIRECTIONS, ModelDir, build_language_model, language_model_config
from ulmfit.training import (
    Dist,
    build_learner,
    finite_or_none,
    peak_memory_mb,
    release_freed_memory,
    select_device,
    unwrap,
)

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
CHECKPOINTS = "checkpoints"


def pretrain(corpus: Path | str, out: Path | str, config: PretrainConfig, direction: str = "both",
             resume: bool = False, max_minutes: float | None = None, device: str | None = None) -> dict:
    """Train the requested directions and write the model directory; returns the metrics per direction.

    A direction already finished in `out` is kept. A run stopped by `max_minutes` or Ctrl-C leaves a checkpoint
    that `resume=True` continues; the return value then says why under `"stopped"` ("time budget" or
    "interrupted"; None when every direction finished).
    """
    corpus, out = Corpus.open(corpus), Path(out)
    directions = {"both": ["fwd", "bwd"], "fwd": ["fwd"], "bwd": ["bwd"]}.get(direction)
    if directions is None:
        raise UlmfitError(f"--direction must be fwd, bwd or both, not '{direction}'.")
    dist = Dist.from_env()
    dev = select_device(device, dist)
    if dist.world_size > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if dist.main:
        _check_run_dir(out, _run_identity(corpus, config), resume)
    model_dir = ModelDir(out, model_config(corpus, config))
    results: dict = model_dir.metrics()
    stopped: str | None = None
    for d in directions:
        if model_dir.weights(d).is_file() and d in results:
            log.info("%s model in %s is finished; keeping it", d, out)
            continue
        history, stopped = _train_direction(corpus, model_dir, config, d, dev, dist, resume, max_minutes)
        results[d] = history
        if stopped:
            break
    if dist.main:
        model_dir.write_metrics(results)
        if not stopped:
            _finish(model_dir, corpus, config, results)
    if dist.world_size > 1:
        torch.distributed.barrier()
    return results | {"stopped": stopped}


def _run_identity(corpus: Corpus, config: PretrainConfig) -> dict:
    return {"config": config.to_dict(), "corpus": str(corpus.path.resolve()),
            "tokenizer_hash": corpus.meta["tokenizer_hash"], "tokens": corpus.meta["tokens"]}


def _check_run_dir(out: Path, run: dict, resume: bool) -> None:
    """A run directory belongs to one config and corpus: refuse to mix, say how to go on."""
    previous = read_json(out / RUN_FILE)
    if previous is None:
        if resume:
            raise UlmfitError(f"--resume given, but {out} holds no run to resume; leave out --resume to start one.")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UlmfitError(f"cannot create the run directory {out} ({e.strerror}); choose another --out.") from e
        write_json(out / RUN_FILE, run)
        return
    if previous != run:
        changed = sorted(k for k in run["config"] if run["config"][k] != previous["config"].get(k))
        what = f"config keys {', '.join(changed)}" if changed else "the corpus"
        raise UlmfitError(f"{out} holds a run with different {what}; resume it with the same settings, "
                          "or choose another --out.")
    in_progress = any((out / CHECKPOINTS / f"{d}.pt").is_file() for d in DIRECTIONS)
    if in_progress and not resume:
        raise UlmfitError(f"{out} holds a run in progress; pass --resume to continue it, or choose another --out.")


# --- one direction ---------------------------------------------------------------------------------------------

def _train_direction(corpus: Corpus, model_dir: ModelDir, cfg: PretrainConfig, direction: str,
                     dev: torch.device, dist: Dist, resume: bool,
                     max_minutes: float | None) -> tuple[list[dict], str | None]:
    from fastai.data.core import DataLoaders
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import Perplexity, accuracy
    from fastai.text.models.awdlstm import awd_lstm_lm_split

    out = model_dir.path
    torch.manual_seed(cfg.seed + (1 if direction == "bwd" else 0))
    backwards = direction == "bwd"
    dtype = corpus.meta["dtype"]
    try:
        train_dl = StreamLoader(corpus.ids_file("train"), dtype, cfg.bs, cfg.bptt, train=True,
                                variable_bptt=cfg.variable_bptt, backwards=backwards, seed=cfg.seed,
                                rank=dist.rank, world_size=dist.world_size, device=dev)
        valid_dl = StreamLoader(corpus.ids_file("valid"), dtype, min(cfg.bs, max_valid_streams(corpus, cfg)),
                                cfg.bptt, train=False, backwards=backwards, device=dev)
    except ValueError as e:
        raise UlmfitError(f"the corpus is too small for this config ({e}); lower bs or bptt.") from e
    model = build_language_model(model_dir.config)
    learn = build_learner(DataLoaders(train_dl, valid_dl, device=dev), model, cfg, dev,
                          loss_func=CrossEntropyLossFlat(), metrics=[accuracy, Perplexity()],
                          splitter=awd_lstm_lm_split, path=out, dist=dist)

    state = _load_checkpoint(out, direction, learn, dev) if resume else None
    start_epoch = state["epoch"] if state else 0
    if start_epoch >= cfg.epochs:
        raise UlmfitError(f"the {direction} checkpoint in {out} has already run all {cfg.epochs} epochs.")
    keeper = RunKeeper(out, direction, cfg, dist, start_epoch, state, max_minutes)
    with keeper.signals():
        log.info("training the %s model: %s epochs from epoch %d, %s parameters, on %s", direction, cfg.epochs,
                 start_epoch, f"{sum(p.numel() for p in model.parameters()):,}", dev)
        learn.fit_one_cycle(cfg.epochs, cfg.lr, pct_start=cfg.pct_start, moms=cfg.moms, start_epoch=start_epoch,
                            cbs=[keeper])
    if keeper.stopped:
        return keeper.history, keeper.stopped
    if dist.main:
        model_dir.save_weights(direction, unwrap(learn.model).cpu())
        (out / CHECKPOINTS / f"{direction}.pt").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            (out / CHECKPOINTS).rmdir()  # gone once no direction is in progress
    return keeper.history, None


def max_valid_streams(corpus: Corpus, cfg: PretrainConfig) -> int:
    """Valid streams must each hold a few sequences; a small valid split gets fewer streams."""
    return max(1, corpus.meta["tokens"]["valid"] // (4 * cfg.bptt))


# --- checkpoints, budget, metrics -------------------------------------------------------------------------------

def _load_checkpoint(out: Path, direction: str, learn, dev: torch.device) -> dict | None:
    path = out / CHECKPOINTS / f"{direction}.pt"
    if not path.is_file():
        return None
    state = torch.load(path, map_location=dev, weights_only=True)
    unwrap(learn.model).load_state_dict(state["model"])
    learn.opt.load_state_dict(state["opt"])
    log.info("resuming the %s model at epoch %d, batch %d", direction, state["epoch"], state["batch"])
    return state


class RunKeeper(Callback):
    """fastai callback: mid-epoch resume, checkpoints, the time budget, Ctrl-C and per-epoch metrics.

    fastai's `fit_one_cycle(start_epoch=)` skips the epochs a checkpoint has done and keeps the schedule where it
    was; this callback adds what resuming in the middle of an epoch needs (the batches done, the schedule
    position within the epoch, the hidden state and the RNG).
    """

    order = 70  # after the Recorder (50) has the epoch's values

    def __init__(self, out: Path, direction: str, cfg: PretrainConfig, dist: Dist, start_epoch: int,
                 state: dict | None, max_minutes: float | None):
        self.out, self.direction, self.cfg, self.dist = out, direction, cfg, dist
        self.start_epoch, self.state = start_epoch, state
        self.deadline = time.monotonic() + max_minutes * 60 if max_minutes else None
        self.history: list[dict] = list(state["history"]) if state else []
        self.stopped: str | None = None
        self.interrupted = False

    @property
    def skipped(self) -> bool:
        """This epoch was done before the resume: fastai's `SkipToEpoch` cancels it."""
        return self.epoch < self.start_epoch

    def before_fit(self) -> None:
        self.tokens = 0

    def before_epoch(self) -> None:
        if not self.skipped:
            self.learn.dls.train.set_epoch(self.epoch)

    def before_train(self) -> None:
        self.learn.dls.train.skip = 0
        self.batch = 0
        if self.state and self.state["batch"] and self.epoch == self.state["epoch"]:
            # Resuming mid-epoch: skip the batches done, restore where the schedule and the hidden state were.
            done = self.state["batch"]
            self.learn.dls.train.skip = done
            self.batch = done
            self.learn.pct_train += done / (len(self.learn.dls.train) * self.learn.n_epoch)
            rnn = unwrap(self.learn.model)[0]
            device = next(rnn.parameters()).device
            rnn.hidden = [tuple(h.to(device) for h in pair) for pair in self.state["hidden"]]
            rnn.bs = self.state["hidden"][0][0].shape[1]
            torch.set_rng_state(self.state["torch_rng"].cpu())
            if torch.cuda.is_available() and "cuda_rng" in self.state:
                torch.cuda.set_rng_state(self.state["cuda_rng"].cpu())
        self.state = None
        self.tokens = 0
        self._sync()
        self.train_start = time.perf_counter()

    def after_batch(self) -> None:
        if not self.learn.training:
            return
        self.batch += 1
        self.tokens += self.learn.xb[0].numel() * self.dist.world_size
        out_of_time = self.deadline is not None and time.monotonic() > self.deadline
        if self._any_rank(out_of_time or self.interrupted):
            self.train_seconds = time.perf_counter() - self.train_start
            self._save_checkpoint(self.epoch, self.batch)
            self.stopped = "time budget" if out_of_time else "interrupted"
            log.warning("%s: stopped the %s model at epoch %d, batch %d/%d; the checkpoint in %s resumes it "
                        "(--resume)", self.stopped, self.direction, self.epoch, self.batch, len(self.learn.dls.train),
                        self.out / CHECKPOINTS)
            raise CancelFitException()

    def after_train(self) -> None:
        self._sync()
        self.train_seconds = time.perf_counter() - self.train_start

    def after_epoch(self) -> None:
        if self.stopped or self.skipped:
            return
        values = dict(zip(self.learn.recorder.metric_names, self.learn.recorder.log))
        row = {
            "epoch": self.epoch,
            "train_loss": finite_or_none(values.get("train_loss")),
            "valid_loss": finite_or_none(values.get("valid_loss")),
            "valid_ppl": finite_or_none(values.get("perplexity")),
            "accuracy": finite_or_none(values.get("accuracy")),
            "tokens_per_s": round(self.tokens / max(self.train_seconds, 1e-9), 1),
            "train_seconds": round(self.train_seconds, 2),
            "peak_mem_mb": peak_memory_mb(),
        }
        self.history.append(row)
        if self.dist.main:
            _append_csv(self.out / f"log-{self.direction}.csv", row)
            log.info("%s epoch %d: valid loss %.4f, perplexity %.2f, accuracy %.4f, %s tokens/s", self.direction,
                     row["epoch"], row["valid_loss"], row["valid_ppl"], row["accuracy"], f"{row['tokens_per_s']:,.0f}")
        if self.epoch + 1 < self.cfg.epochs:
            self._save_checkpoint(self.epoch + 1, 0)
        release_freed_memory()

    def _save_checkpoint(self, epoch: int, batch: int) -> None:
        if not self.dist.main:
            return
        model = unwrap(self.learn.model)
        state = {
            "model": model.state_dict(),
            "opt": _plain(self.learn.opt.state_dict()),
            "epoch": epoch,
            "batch": batch,
            "hidden": [tuple(h.detach().cpu() for h in pair) for pair in model[0].hidden],
            "torch_rng": torch.get_rng_state(),
            "history": self.history,
        }
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state()
        path = self.out / CHECKPOINTS / f"{self.direction}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(state, tmp)
        tmp.replace(path)

    def _any_rank(self, flag: bool) -> bool:
        if self.dist.world_size == 1:
            return flag
        t = torch.tensor([int(flag)], device=next(self.learn.model.parameters()).device)
        torch.distributed.all_reduce(t)
        return bool(t.item())

    def _sync(self) -> None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()

    @contextlib.contextmanager
    def signals(self) -> Iterator[None]:
        """The first Ctrl-C asks for a clean stop after the current batch; a second one stops at once."""

        def ask_stop(signum, frame):
            self.interrupted = True
            signal.signal(signal.SIGINT, previous)

        previous = signal.signal(signal.SIGINT, ask_stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def _plain(obj):
    """fastai's optimizer state in types `torch.load(weights_only=True)` accepts (no fastcore `L`, no numpy)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) or type(obj).__name__ == "L":
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, torch.Tensor):  # numpy scalars
        return obj.item()
    return obj


def _append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


# --- the model directory ---------------------------------------------------------------------------------------

def model_config(corpus: Corpus, cfg: PretrainConfig) -> dict:
    """The language model config for a corpus and a pretraining config."""
    meta = corpus.meta
    return language_model_config(cfg, meta["vocab_size"], meta["lang"], {
        "type": meta["tokenizer"], "file": meta["tokenizer_file"], "rules": meta["rules"],
        "hash": meta["tokenizer_hash"]})


def _finish(model_dir: ModelDir, corpus: Corpus, cfg: PretrainConfig, results: dict) -> None:
    """Write the tokenizer, the model card and config.json: the directory is now a finished model."""
    model_dir.write_tokenizer(corpus.meta["tokenizer"], corpus.tokenizer_file)
    directions = [d for d in DIRECTIONS if model_dir.weights(d).is_file()]
    meta = corpus.meta
    config = model_config(corpus, cfg) | {
        "directions": directions,
        "corpus": {k: meta.get(k) for k in ("source", "articles", "tokens", "vocab_size", "lang")},
        "train": cfg.to_dict(),
        "metrics": {d: results[d][-1] for d in directions if results.get(d)},
    }
    model_dir.finish(config, render_card(config, model_dir.path.resolve().name))
    log.info("model directory ready: %s (%s)", model_dir.path, ", ".join(directions))
