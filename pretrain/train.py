"""`ulmfit pretrain`: forward and backward AWD-LSTM language models on a prepared corpus.

A fastai `Learner` (built by `ulmfit.training`) does the training: fastai's one-cycle schedule, AdamW, AR/TAR
through `RNNRegularizer`, gradient clipping, mixed precision on GPU, DDP under `torchrun`. This module feeds it
`StreamLoader` batches and adds what a long run needs: checkpoints (`checkpoints.py`) every epoch, every
`checkpoint_minutes` within an epoch and on a time budget or Ctrl-C; exact resumption from any of them (fastai's
`start_epoch`, plus the batch position, hidden state and RNG); a stop with one clear error when the loss or the
weights stop being finite; a lock on the run directory; per-epoch metrics; and the model directory at the end.
"""
from __future__ import annotations

import contextlib
import csv
import io
import logging
import signal
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from fastai.callback.core import Callback, CancelFitException

from ulmfit.config import PretrainConfig
from ulmfit.errors import UlmfitError
from ulmfit.files import atomic_write_text, output_lock, read_json, write_json
from ulmfit.pretrain.card import render_card
from ulmfit.pretrain.checkpoints import Checkpoints, non_finite
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
# Minutes between checkpoints within an epoch, on a GPU and on the CPU alike: what a kill -9 or a power cut can
# lose is wall-clock time, and the write costs the same fraction of it on either (under 1 %: see docs/how-it-works.md).
CHECKPOINT_MINUTES = 10.0


def pretrain(corpus: Path | str, out: Path | str, config: PretrainConfig, direction: str = "both",
             resume: bool = False, max_minutes: float | None = None, device: str | None = None,
             checkpoint_minutes: float = CHECKPOINT_MINUTES) -> dict:
    """Train the requested directions and write the model directory; returns the metrics per direction.

    A direction already finished in `out` is kept. A checkpoint is written at every epoch end and every
    `checkpoint_minutes` within an epoch (0: only at epoch ends), so a run killed at any moment loses at
    most that much; `resume=True` continues it exactly. A run stopped by `max_minutes` or Ctrl-C leaves a
    checkpoint too; the return value then says why under `"stopped"` ("time budget" or "interrupted"; None when
    every direction finished). `out` is locked while the run lasts: a second run on it gets an error.
    """
    corpus, out = Corpus.open(corpus), Path(out)
    directions = {"both": ["fwd", "bwd"], "fwd": ["fwd"], "bwd": ["bwd"]}.get(direction)
    if directions is None:
        raise UlmfitError(f"--direction must be fwd, bwd or both, not '{direction}'.")
    if not checkpoint_minutes >= 0:
        raise UlmfitError(f"--checkpoint-minutes must be 0 (only at epoch ends) or more, not {checkpoint_minutes}.")
    dist = Dist.from_env()
    _check_corpus_fits(corpus, config, dist)
    dev = select_device(device, dist)
    if dist.world_size > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    with output_lock(out) if dist.main else contextlib.nullcontext():
        if dist.main:
            _check_run_dir(out, _run_identity(corpus, config), resume)
        if dist.world_size > 1:
            torch.distributed.barrier()  # the other ranks read run.json and the checkpoints once rank 0 has checked
        model_dir = ModelDir(out, model_config(corpus, config))
        results: dict = model_dir.metrics()
        stopped: str | None = None
        for d in directions:
            if model_dir.weights(d).is_file() and d in results:
                log.info("%s model in %s is finished; keeping it", d, out)
                continue
            history, stopped = _train_direction(corpus, model_dir, config, d, dev, dist, resume, max_minutes,
                                                checkpoint_minutes)
            results[d] = history
            if dist.main:
                model_dir.write_metrics(results)  # before the checkpoints go: a kill now loses nothing
                if not stopped:
                    Checkpoints(out / CHECKPOINTS, d).remove_all()
            if stopped:
                break
        if dist.main and not stopped:
            _finish(model_dir, corpus, config, results)
        if dist.world_size > 1:
            torch.distributed.barrier()
    return results | {"stopped": stopped}


def _check_corpus_fits(corpus: Corpus, cfg: PretrainConfig, dist: Dist) -> None:
    """Refuse, before anything is written, a corpus whose splits cannot feed this config."""
    itemsize = np.dtype(corpus.meta["dtype"]).itemsize
    tokens = {split: corpus.ids_file(split).stat().st_size // itemsize for split in ("train", "valid")}
    redo = "prepare it again from a larger source"
    if tokens["train"] == 0:
        raise UlmfitError(f"the corpus {corpus.path} has no train text (train.bin is empty): {redo}.")
    if tokens["valid"] == 0:
        raise UlmfitError(f"the corpus {corpus.path} has no valid text (valid.bin is empty): {redo} or with a "
                          "larger --valid-frac.")
    if tokens["valid"] <= cfg.bptt:
        raise UlmfitError(f"the corpus {corpus.path} has only {tokens['valid']} valid tokens, less than one "
                          f"sequence of bptt {cfg.bptt}: {redo} or with a larger --valid-frac, or lower bptt.")
    try:
        StreamLoader(corpus.ids_file("train"), corpus.meta["dtype"], cfg.bs, cfg.bptt, world_size=dist.world_size)
    except ValueError as e:
        raise UlmfitError(f"the corpus is too small for this config ({e}); lower bs or bptt.") from e


def _run_identity(corpus: Corpus, config: PretrainConfig) -> dict:
    return {"config": config.to_dict(), "corpus": str(corpus.path.resolve()),
            "tokenizer_hash": corpus.meta["tokenizer_hash"], "tokens": corpus.meta["tokens"]}


def _check_run_dir(out: Path, run: dict, resume: bool) -> None:
    """A run directory belongs to one config and corpus: refuse to mix, say how to go on. A run that failed
    before it saved anything (no checkpoint, no weights) blocks nothing: the new run takes its place."""
    previous = read_json(out / RUN_FILE)
    in_progress = any(Checkpoints(out / CHECKPOINTS, d).complete() for d in DIRECTIONS)
    if not isinstance(previous, dict):
        if in_progress:
            raise UlmfitError(f"{out / RUN_FILE} is missing or damaged, so the checkpoints in {out / CHECKPOINTS} "
                              f"cannot be matched with settings; delete {out} to start over, or choose another --out.")
        if resume:
            raise UlmfitError(f"--resume given, but {out} holds no run to resume; leave out --resume to start one.")
    elif previous != run:
        saved = [str(p.relative_to(out)) for p in _saved_work(out)]
        if saved:
            changed = sorted(k for k in run["config"] if run["config"][k] != (previous.get("config") or {}).get(k))
            what = f"other values of {', '.join(changed)}" if changed else "another corpus (or one prepared again)"
            raise UlmfitError(f"{out} holds a run with {what} ({', '.join(saved[:3])}); resume it with the same "
                              f"settings, or delete {out} to start over, or choose another --out.")
        log.info("%s holds the settings of a run that saved nothing; starting a new run there", out)
    elif in_progress and not resume:
        raise UlmfitError(f"{out} holds a run in progress; pass --resume to continue it, or delete {out} to start "
                          "over, or choose another --out.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UlmfitError(f"cannot create the run directory {out} ({e.strerror}); choose another --out.") from e
    write_json(out / RUN_FILE, run)


def _saved_work(out: Path) -> list[Path]:
    """What a run in `out` has saved that a new run would lose: checkpoints and trained weights."""
    model_dir = ModelDir(out, {})
    found = [model_dir.weights(d) for d in DIRECTIONS if model_dir.weights(d).is_file()]
    for d in DIRECTIONS:
        found += Checkpoints(out / CHECKPOINTS, d).complete()[:1]
    return found


# --- one direction ---------------------------------------------------------------------------------------------

def _train_direction(corpus: Corpus, model_dir: ModelDir, cfg: PretrainConfig, direction: str,
                     dev: torch.device, dist: Dist, resume: bool, max_minutes: float | None,
                     checkpoint_minutes: float) -> tuple[list[dict], str | None]:
    from fastai.data.core import DataLoaders
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import Perplexity, accuracy
    from fastai.text.models.awdlstm import awd_lstm_lm_split

    out = model_dir.path
    torch.manual_seed(cfg.seed + (1 if direction == "bwd" else 0))
    backwards = direction == "bwd"
    dtype = corpus.meta["dtype"]
    train_dl = StreamLoader(corpus.ids_file("train"), dtype, cfg.bs, cfg.bptt, train=True,
                            variable_bptt=cfg.variable_bptt, backwards=backwards, seed=cfg.seed,
                            rank=dist.rank, world_size=dist.world_size, device=dev)
    valid_dl = StreamLoader(corpus.ids_file("valid"), dtype, min(cfg.bs, max_valid_streams(corpus, cfg)),
                            cfg.bptt, train=False, backwards=backwards, device=dev)
    model = build_language_model(model_dir.config)
    learn = build_learner(DataLoaders(train_dl, valid_dl, device=dev), model, cfg, dev,
                          loss_func=CrossEntropyLossFlat(), metrics=[accuracy, Perplexity()],
                          splitter=awd_lstm_lm_split, path=out, dist=dist)

    checkpoints = Checkpoints(out / CHECKPOINTS, direction)
    state = _load_checkpoint(checkpoints, learn, dev) if resume else None
    start_epoch = state["epoch"] if state else 0
    if start_epoch >= cfg.epochs:
        raise UlmfitError(f"the {direction} checkpoint in {out} has already run all {cfg.epochs} epochs.")
    keeper = RunKeeper(checkpoints, direction, cfg, dist, start_epoch, state, max_minutes, checkpoint_minutes)
    with keeper.signals():
        log.info("training the %s model: %s epochs from epoch %d, %s parameters, on %s", direction, cfg.epochs,
                 start_epoch, f"{sum(p.numel() for p in model.parameters()):,}", dev)
        learn.fit_one_cycle(cfg.epochs, cfg.lr, pct_start=cfg.pct_start, moms=cfg.moms, start_epoch=start_epoch,
                            cbs=[keeper])
    if keeper.error:
        raise keeper.error
    if keeper.stopped:
        return keeper.history, keeper.stopped
    if dist.main:
        _check_weights(learn.model, direction, out, "at the end of training")
        model_dir.save_weights(direction, unwrap(learn.model).cpu())
    return keeper.history, None


def max_valid_streams(corpus: Corpus, cfg: PretrainConfig) -> int:
    """Valid streams must each hold a few sequences; a small valid split gets fewer streams."""
    return max(1, corpus.meta["tokens"]["valid"] // (4 * cfg.bptt))


# --- checkpoints, budget, metrics -------------------------------------------------------------------------------

def _load_checkpoint(checkpoints: Checkpoints, learn, dev: torch.device) -> dict | None:
    """Restore the model and optimizer from the newest good checkpoint; returns its state (None: there is none)."""
    state = checkpoints.load(dev)
    if state is None:
        return None
    try:
        unwrap(learn.model).load_state_dict(state["model"])
        learn.opt.load_state_dict(state["opt"])
    except (RuntimeError, KeyError, ValueError, IndexError) as e:
        raise UlmfitError(f"the {checkpoints.direction} checkpoint in {checkpoints.folder} does not fit this model "
                          f"({str(e).splitlines()[0]}); resume with the settings it was written with.") from None
    log.info("resuming the %s model at epoch %d, batch %d", checkpoints.direction, state["epoch"], state["batch"])
    return state


class RunKeeper(Callback):
    """fastai callback: mid-epoch resume, checkpoints, the time budget, Ctrl-C, the finiteness check and
    per-epoch metrics.

    fastai's `fit_one_cycle(start_epoch=)` skips the epochs a checkpoint has done and keeps the schedule where it
    was; this callback adds what resuming exactly needs: the RNG state at any checkpoint, and within an epoch the
    batches done, the schedule position and the hidden state.
    """

    order = 70  # after the Recorder (50) has the epoch's values

    def __init__(self, checkpoints: Checkpoints, direction: str, cfg: PretrainConfig, dist: Dist,
                 start_epoch: int, state: dict | None, max_minutes: float | None,
                 checkpoint_minutes: float = CHECKPOINT_MINUTES):
        self.checkpoints, self.direction, self.cfg, self.dist = checkpoints, direction, cfg, dist
        self.out = checkpoints.folder.parent
        self.start_epoch, self.state = start_epoch, state
        self.deadline = time.monotonic() + max_minutes * 60 if max_minutes else None
        self.every = checkpoint_minutes * 60 if checkpoint_minutes else None
        self.next_checkpoint = time.monotonic() + self.every if self.every else None
        self.history: list[dict] = list(state["history"]) if state else []
        self.stopped: str | None = None
        self.error: UlmfitError | None = None
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
        if self.state and self.epoch == self.state["epoch"]:
            # Resuming: the RNG as it was when the checkpoint was written, at an epoch end as well as within one.
            torch.set_rng_state(self.state["torch_rng"].cpu())
            if torch.cuda.is_available() and "cuda_rng" in self.state:
                torch.cuda.set_rng_state(self.state["cuda_rng"].cpu())
        if self.state and self.state["batch"] and self.epoch == self.state["epoch"]:
            # Within an epoch: skip the batches done, restore where the schedule and the hidden state were.
            done = self.state["batch"]
            self.learn.dls.train.skip = done
            self.batch = done
            self.learn.pct_train += done / (len(self.learn.dls.train) * self.learn.n_epoch)
            rnn = unwrap(self.learn.model)[0]
            device = next(rnn.parameters()).device
            rnn.hidden = [tuple(h.to(device) for h in pair) for pair in self.state["hidden"]]
            rnn.bs = self.state["hidden"][0][0].shape[1]
        self.state = None
        self.tokens = 0
        self._sync()
        self.train_start = time.perf_counter()

    def after_batch(self) -> None:
        if self.learn.training:
            self._stop_on_error(self._after_train_batch)

    def _stop_on_error(self, step) -> None:
        """Run `step`; an `UlmfitError` it raises ends the fit and is raised again once fastai has stopped (fastai
        would otherwise rewrite its message into two lines)."""
        try:
            step()
        except UlmfitError as e:
            self.error = e
            raise CancelFitException() from None

    def _after_train_batch(self) -> None:
        self.batch += 1
        self.tokens += self.learn.xb[0].numel() * self.dist.world_size
        now = time.monotonic()
        out_of_time = self.deadline is not None and now > self.deadline
        bad_loss, stop = self._any_rank(not bool(torch.isfinite(self.learn.loss).all()),
                                        out_of_time or self.interrupted)
        if bad_loss:
            raise UlmfitError(f"the {self.direction} model's loss became NaN or infinite at epoch {self.epoch}, batch "
                              f"{self.batch}: training stopped and no weights were written; lower lr (--set lr=...) "
                              f"and start again in a new --out, or delete {self.out}.")
        if stop:
            self.train_seconds = time.perf_counter() - self.train_start
            self._save_checkpoint(self.epoch, self.batch)
            self.stopped = "time budget" if out_of_time else "interrupted"
            log.warning("%s: stopped the %s model at epoch %d, batch %d/%d; the checkpoint in %s resumes it "
                        "(--resume)", self.stopped, self.direction, self.epoch, self.batch, len(self.learn.dls.train),
                        self.checkpoints.folder)
            raise CancelFitException()
        if self.next_checkpoint is not None and now >= self.next_checkpoint and self.batch < len(self.learn.dls.train):
            self._save_checkpoint(self.epoch, self.batch)

    def after_train(self) -> None:
        self._sync()
        self.train_seconds = time.perf_counter() - self.train_start

    def after_epoch(self) -> None:
        if not (self.stopped or self.error or self.skipped):
            self._stop_on_error(self._epoch_done)

    def _epoch_done(self) -> None:
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
            _write_log(self.out / f"log-{self.direction}.csv", self.history)
            log.info("%s epoch %d: valid loss %s, perplexity %s, accuracy %s, %s tokens/s", self.direction,
                     row["epoch"], row["valid_loss"], row["valid_ppl"], row["accuracy"], f"{row['tokens_per_s']:,.0f}")
        if self.epoch + 1 < self.cfg.epochs:
            self._save_checkpoint(self.epoch + 1, 0)
        release_freed_memory()

    def _save_checkpoint(self, epoch: int, batch: int) -> None:
        if self.every:
            self.next_checkpoint = time.monotonic() + self.every
        # every rank checks (their weights are the same), so that under DDP they all stop together
        _check_weights(self.learn.model, self.direction, self.out, f"at epoch {epoch}, batch {batch}")
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
        started = time.perf_counter()
        try:
            path = self.checkpoints.save(state, epoch, batch)
        except OSError as e:
            raise UlmfitError(f"cannot write the {self.direction} checkpoint in {self.checkpoints.folder} "
                              f"({e.strerror or e}); free some space there (or fix its permissions) and run the "
                              "same command with --resume.") from None
        log.debug("checkpoint %s written in %.2f s", path, time.perf_counter() - started)

    def _any_rank(self, *flags: bool) -> list[bool]:
        """Each flag, true when it is true on any rank (one all-reduce for all of them under DDP)."""
        if self.dist.world_size == 1:
            return list(flags)
        t = torch.tensor([int(f) for f in flags], device=next(self.learn.model.parameters()).device)
        torch.distributed.all_reduce(t)
        return [bool(v) for v in t.tolist()]

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


def _check_weights(model: torch.nn.Module, direction: str, out: Path, when: str) -> None:
    """Stop with an error when a weight is NaN or infinite: such a model is never saved, nor checkpointed."""
    bad = non_finite(unwrap(model).state_dict())
    if bad:
        raise UlmfitError(f"the {direction} model's weights hold NaN or infinite values ({bad}) {when}: training "
                          f"stopped and they were not saved; lower lr (--set lr=...) and start again in a new --out, "
                          f"or delete {out}.")


def _plain(obj):
    """fastai's optimizer state in types `torch.load(weights_only=True)` accepts (no fastcore `L`, no numpy)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) or type(obj).__name__ == "L":
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, torch.Tensor):  # numpy scalars
        return obj.item()
    return obj


def _write_log(path: Path, rows: list[dict]) -> None:
    """The per-epoch log as CSV, rewritten whole: a resumed run never repeats a row."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


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
