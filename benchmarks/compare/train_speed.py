"""Training speed, memory and perplexity of the ulmfit pretraining driver against the stock fastai pipeline.

Both pipelines train the same AWD-LSTM language model (fastai's `get_language_model(AWD_LSTM, …)` with the
config's architecture and the same initial weights) on the same token ids (a corpus's `train.bin`), with the same
recipe (Adam with `sqr_mom=adam_beta2` and `wd`, one-cycle `lr`/`pct_start`/`moms`, AR/TAR `alpha`/`beta`, gradient
clipping `clip`, metrics accuracy and perplexity), for the same number of epochs, in one run:

1. `ulmfit`: `ulmfit.pretrain.train.pretrain(corpus, tmp, config, direction="fwd", device=…)`, the package's driver
   (memmapped `StreamLoader` batches with AWD-LSTM's variable sequence length, a fastai `Learner`).
2. `fastai`: the stock fastai path. `train.bin` is split at its `xxbos` ids into documents, one `TensorText` per
   article starting with `xxbos` (what `Numericalize` leaves a fastai dataset holding);
   `LMDataLoader(docs, bs, seq_len=bptt, shuffle=True)` for train and `LMDataLoader(valid_docs, bs=valid_bs,
   seq_len=bptt)` over `valid.bin` for valid; `TextLearner` (which adds `rnn_cbs(alpha, beta)`) with
   `CrossEntropyLossFlat`, `awd_lstm_lm_split`, `partial(Adam, sqr_mom, wd)`, `GradientClip(clip)`,
   `[accuracy, Perplexity()]`; `fit_one_cycle(epochs, lr, pct_start, moms)`. Progress bars off, as in the driver.
   On CUDA both use the mixed precision the config's `mixed_precision` asks for (`auto`: bf16 where supported).

Each (config, pipeline) pair runs `--repeats` times, ulmfit and fastai alternating (ABBA order across repeats,
so drifting machine load hits both alike), every run in its own child process (fresh interpreter, its own
memory figures). What is measured (also written into the JSON's `notes`):

- `tokens_per_s`: training tokens processed / training seconds. Both are taken by one fastai callback that this
  script adds to every `Learner` of the run through fastai's `defaults.callbacks` (so the driver's Learner gets it
  too, without touching the driver): training seconds run from `before_train` to `after_train` of each epoch
  (validation, checkpointing and set-up excluded; CUDA synchronised at both ends), training tokens are the input ids
  of the training batches (`bs × seq_len` summed). The driver's own per-epoch `tokens_per_s` is kept as a
  cross-check (`per_epoch[].driver_tokens_per_s`).
- `batch_median_tokens_per_s`: the median over training batches of batch tokens / batch seconds (from one batch's
  end to the next, loading included), and `slow_batches_pct`, the share of batches slower than half that median:
  a figure that bursts of load from other users of a shared machine barely move, and a sign of such bursts (CPU
  only; CUDA runs are not synchronised per batch).
- `tokens_seen`: training tokens over all epochs; the two pipelines differ only by the few ids (< 2 × bs) each
  loader leaves out to make `bs` equal streams.
- `valid_ppl`: exp(mean valid loss) after the last epoch, by fastai's `Perplexity` metric. Each pipeline uses its own
  valid loader over the same `valid.bin` ids in order, cut into `valid_bs` streams (the driver's own choice, given
  to fastai too).
- `peak_mem_mb`: on CPU the child's peak resident set size (`getrusage(RUSAGE_SELF).ru_maxrss` at its end, MiB),
  which includes the interpreter, torch and fastai (`baseline_rss_mb` is the RSS right after the imports) and, for
  ulmfit, the writing of its model directory after training (`peak_rss_fit_mb` is the same peak read at the end of
  fit: data loading and training only); on CUDA `torch.cuda.max_memory_allocated()` in MiB.

The corpus: `--corpus DIR` (any `ulmfit prepare` output), else WikiText-2's validation text from the shared data
(`../shared/data/en/wikitext-2/valid.txt.xz`), prepared once with `ulmfit prepare en --text … --vocab-size 8000`
into a cache directory. `--max-tokens` cuts `train.bin` to whole articles up to that many tokens (a temporary
corpus shared by both pipelines) so the slower configs fit a CPU time budget; on CPU the `small` config is cut by
default. The valid split is never cut.

Run from the repository root (CPU: about 10 minutes on 2 cores):

    python benchmarks/train_speed.py [--corpus DIR] [--configs tiny,small] [--device cpu] [--epochs 1]
        [--bs 32] [--bptt 70] [--repeats 2] [--max-tokens small=120000] [--set key=value]
        [--out benchmarks/results/train_speed.json]

On a GPU, e.g.:

    python benchmarks/train_speed.py --device cuda --configs paper --bs 128 --bptt 70 --epochs 3 \\
        --out benchmarks/results/train_speed_gpu.json
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from environment import code_version, machine_info  # beside this script

ROOT = Path(__file__).resolve().parents[2]
SHARED_TEXT = ROOT.parent / "shared" / "data" / "en" / "wikitext-2" / "valid.txt.xz"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "train_speed.json"
DEFAULT_VOCAB = 8000
PIPELINES = ("ulmfit", "fastai")
RESULT_MARKER = "TRAIN_SPEED_RESULT "
# Train tokens per config on CPU, so that the whole default benchmark stays near 15 minutes on 2 cores.
CPU_MAX_TOKENS = {"small": 120_000}
MIB = 2**20

NOTES = {
    "tokens_per_s": "training tokens / training seconds, both from one fastai callback added to every Learner "
                    "(fastai defaults.callbacks, so the ulmfit driver's Learner too). Training seconds: wall time "
                    "from before_train to after_train of each epoch, summed over epochs (validation, checkpoints, "
                    "set-up and imports excluded; torch.cuda.synchronize at both ends on CUDA). Training tokens: "
                    "input ids of the training batches (bs x seq_len summed). The driver's own per-epoch figure is "
                    "kept as per_epoch[].driver_tokens_per_s.",
    "batch_median_tokens_per_s": "median over training batches of batch tokens / batch seconds (previous batch "
                                 "end to this batch end, data loading included); robust to bursts of load from "
                                 "other users of the machine. slow_batches_pct: share of batches slower than half "
                                 "that median (a sign of such bursts). CPU only (null on CUDA: no per-batch sync).",
    "tokens_seen": "training tokens over all epochs (same train.bin for both pipelines; each loader leaves out "
                   "fewer than 2 x bs ids per epoch to make bs equal streams).",
    "valid_ppl": "exp(mean valid cross-entropy) after the last epoch (fastai Perplexity metric); each pipeline's "
                 "own valid loader over the same valid.bin ids in order, cut into valid_bs streams (the ulmfit "
                 "driver's choice, used for fastai too), hidden state carried across batches.",
    "peak_mem_mb": "CPU: peak RSS of the run's own child process, getrusage(RUSAGE_SELF).ru_maxrss at its end, in "
                   "MiB; it includes Python, torch and fastai (baseline_rss_mb = RSS right after the imports) and, "
                   "for ulmfit, writing the model directory after training (peak_rss_fit_mb = the same peak read "
                   "at the end of fit, i.e. data loading and training only). peak_rss_mb is the CPU figure on "
                   "CUDA too. "
                   "CUDA: torch.cuda.max_memory_allocated() in MiB.",
    "train_seconds": "sum over epochs of the training seconds defined under tokens_per_s.",
    "run_seconds": "wall time of the whole training call in the child (fit incl. validation; ulmfit also writes "
                   "its model directory); child_seconds adds interpreter start, imports and data loading.",
    "median": "summary medians are over the repeats of a (config, pipeline) pair (the mean of the two for 2).",
    "tokens_per_s_ratio": "median ulmfit tokens_per_s / median fastai tokens_per_s; per_repeat pairs the runs of "
                          "the same repeat, which ran back to back; batch_median_tokens_per_s_ratio is the same "
                          "for batch_median_tokens_per_s.",
    "valid_ppl_diff_pct": "(median ulmfit valid_ppl - median fastai valid_ppl) / median fastai valid_ppl x 100; "
                          "negative = ulmfit reached a lower perplexity after the same tokens.",
    "differences": "the pipelines share model, initial weights, optimiser, schedule, regularisation and metrics; "
                   "they differ in batching: ulmfit reads bs contiguous streams of train.bin from a random offset "
                   "with AWD-LSTM's variable sequence length (mean ~bptt), fastai shuffles the articles each epoch "
                   "and concatenates them into bs streams of fixed seq_len=bptt.",
}


# --- corpus -------------------------------------------------------------------------------------------------------

def _fail(message: str) -> None:
    sys.exit(f"train_speed: {message}")


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ulmfit" / "train_speed"


def ensure_corpus(text: Path, vocab_size: int, cache: Path) -> Path:
    """The WikiText-2 corpus in the cache, prepared with `ulmfit prepare` the first time (atomically)."""
    corpus = cache / f"wikitext2-valid-sp{vocab_size // 1000}k"
    if (corpus / "meta.json").is_file():
        return corpus
    if not text.is_file():
        _fail(f"the default text {text} does not exist; pass --corpus DIR with a corpus made by `ulmfit prepare`.")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = corpus.with_name(f"{corpus.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [sys.executable, "-m", "ulmfit", "-q", "prepare", "en", "--text", str(text), "--out", str(tmp),
           "--vocab-size", str(vocab_size)]
    print(f"preparing the corpus: {' '.join(cmd)}", file=sys.stderr, flush=True)
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        _fail(f"`ulmfit prepare` failed (exit code {res.returncode}):\n{_tail(res.stderr)}")
    shutil.rmtree(tmp / "text", ignore_errors=True)  # cleaned text: not needed for training
    tmp.replace(corpus)
    return corpus


def check_corpus(corpus: Path) -> dict:
    from ulmfit.errors import UlmfitError
    from ulmfit.pretrain.corpus import Corpus

    try:
        return Corpus.open(corpus).meta
    except UlmfitError as e:
        _fail(str(e))


def bos_id(meta: dict) -> int:
    specials = meta.get("special_tokens") or []
    return specials.index("xxbos") if "xxbos" in specials else 2


def truncate_corpus(corpus: Path, meta: dict, max_tokens: int, dest: Path) -> Path:
    """A corpus whose train.bin holds the whole articles of `corpus` that fit in `max_tokens` (valid unchanged)."""
    import numpy as np

    ids = np.memmap(corpus / "train.bin", dtype=np.dtype(meta["dtype"]), mode="r")
    if max_tokens >= len(ids):
        return corpus
    starts = np.flatnonzero(ids[: max_tokens + 1] == bos_id(meta))
    cut = int(starts[-1]) if len(starts) and starts[-1] > 0 else max_tokens  # one huge article: cut inside it
    dest.mkdir(parents=True, exist_ok=True)
    np.asarray(ids[:cut]).tofile(dest / "train.bin")
    shutil.copyfile(corpus / "valid.bin", dest / "valid.bin")
    shutil.copyfile(corpus / meta["tokenizer_file"], dest / meta["tokenizer_file"])
    cut_meta = json.loads(json.dumps(meta))
    cut_meta["tokens"]["train"] = cut
    cut_meta["articles"]["train"] = max(1, int(np.count_nonzero(ids[:cut] == bos_id(meta))))
    cut_meta["truncated"] = {"from": str(corpus), "train_tokens_before": int(len(ids)), "max_tokens": max_tokens}
    (dest / "meta.json").write_text(json.dumps(cut_meta, indent=2) + "\n", encoding="utf-8")
    return dest


# --- child processes: one training run each ----------------------------------------------------------------------

def _sync() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / MIB


def _peak_mb(device) -> dict[str, float]:
    import torch

    peak = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # Linux: KiB
    if device.type == "cuda":
        peak["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / MIB
    peak["peak_mem_mb"] = peak.get("peak_cuda_mb", peak["peak_rss_mb"])
    return peak


def _precision(cfg, device) -> str:
    """The mixed precision the ulmfit driver picks for this config and device (the fastai run uses the same)."""
    import torch

    if device.type != "cuda" or cfg.mixed_precision == "no":
        return "no"
    if cfg.mixed_precision == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return cfg.mixed_precision


def install_timer() -> list:
    """Add a `TrainTimer` to every fastai `Learner` made from now on (fastai's `defaults.callbacks`, which the
    driver's Learner gets too), so both pipelines are timed and counted by the same code; returns its instances."""
    from fastai.callback.core import Callback
    from fastai.torch_core import defaults

    instances: list = []

    class TrainTimer(Callback):
        """Per epoch: training seconds (before_train → after_train), training tokens, per-batch rates, metrics."""

        order = 70  # after the Recorder (50) has the epoch's values

        def __init__(self):
            self.epochs: list[dict] = []
            instances.append(self)

        def before_train(self):
            self.tokens, self.rates = 0, []
            _sync()
            self.start = self.last = time.perf_counter()

        def after_batch(self):
            if not self.training:
                return
            now = time.perf_counter()
            n = self.learn.xb[0].numel()
            self.tokens += n
            self.rates.append(n / max(now - self.last, 1e-9))  # batch time includes loading it
            self.last = now

        def after_train(self):
            _sync()
            self.seconds = time.perf_counter() - self.start

        def after_fit(self):
            self.peak_rss_fit_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        def after_epoch(self):
            values = dict(zip(self.learn.recorder.metric_names, self.learn.recorder.log))
            self.epochs.append({"epoch": len(self.epochs), "tokens": self.tokens, "train_seconds": self.seconds,
                                "valid_loss": float(values["valid_loss"]), "valid_ppl": float(values["perplexity"]),
                                "accuracy": float(values["accuracy"]), "batch_rates": self.rates})

    defaults.callbacks = [*defaults.callbacks, TrainTimer]
    return instances


def child_ulmfit(spec: dict, cfg, meta: dict, device, timers: list) -> dict[str, Any]:
    from ulmfit.pretrain.corpus import Corpus
    from ulmfit.pretrain.train import max_valid_streams, pretrain

    corpus = Path(spec["corpus"])
    with tempfile.TemporaryDirectory(prefix="train-speed-ulmfit-") as tmp:
        start = time.perf_counter()
        result = pretrain(corpus, Path(tmp) / "run", cfg, direction="fwd", device=spec["device"])
        run_seconds = time.perf_counter() - start
    if result.get("stopped"):
        raise RuntimeError("the ulmfit driver stopped before the end of training")
    epochs = timers[-1].epochs
    for e, h in zip(epochs, result["fwd"]):  # the driver's own figures, to cross-check
        e["driver_tokens_per_s"], e["driver_valid_ppl"] = h["tokens_per_s"], h["valid_ppl"]
    return {"epochs": epochs, "run_seconds": run_seconds, "valid_bs": min(cfg.bs, max_valid_streams(Corpus.open(corpus), cfg))}


def child_fastai(spec: dict, cfg, meta: dict, device, timers: list) -> dict[str, Any]:
    from functools import partial

    import numpy as np
    import torch
    from fastai.callback.training import GradientClip
    from fastai.data.core import DataLoaders
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import Perplexity, accuracy
    from fastai.optimizer import Adam
    from fastai.text.data import LMDataLoader, TensorText
    from fastai.text.learner import TextLearner
    from fastai.text.models.awdlstm import AWD_LSTM, awd_lstm_lm_split
    from fastai.text.models.core import get_language_model
    from fastai.torch_core import set_seed

    from ulmfit.pretrain.corpus import Corpus
    from ulmfit.pretrain.train import max_valid_streams

    corpus = Path(spec["corpus"])
    bos = bos_id(meta)

    def documents(path: Path) -> list:
        """A numericalized fastai text dataset: one LongTensor per article, each starting with xxbos."""
        ids = np.fromfile(path, dtype=np.dtype(meta["dtype"])).astype(np.int64)
        bounds = np.flatnonzero(ids == bos).tolist()
        if not bounds or bounds[0] != 0:
            bounds.insert(0, 0)
        bounds.append(len(ids))
        return [TensorText(torch.from_numpy(ids[a:b])) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]

    set_seed(cfg.seed)
    train_docs = documents(corpus / "train.bin")
    valid_docs = documents(corpus / "valid.bin")
    valid_bs = min(cfg.bs, max_valid_streams(Corpus.open(corpus), cfg))
    train_dl = LMDataLoader(train_docs, bs=cfg.bs, seq_len=cfg.bptt, shuffle=True)
    valid_dl = LMDataLoader(valid_docs, bs=valid_bs, seq_len=cfg.bptt)
    dls = DataLoaders(train_dl, valid_dl, device=device)
    torch.manual_seed(cfg.seed)  # as the driver does right before building the model: same initial weights
    model = get_language_model(AWD_LSTM, meta["vocab_size"], config=cfg.arch(), drop_mult=cfg.drop_mult).to(device)
    learn = TextLearner(dls, model, alpha=cfg.alpha, beta=cfg.beta, moms=cfg.moms, loss_func=CrossEntropyLossFlat(),
                        opt_func=partial(Adam, sqr_mom=cfg.adam_beta2, wd=cfg.wd), metrics=[accuracy, Perplexity()],
                        splitter=awd_lstm_lm_split, wd=cfg.wd, cbs=[GradientClip(cfg.clip)])
    learn.logger = lambda row: None
    precision = _precision(cfg, device)
    if precision == "bf16":
        learn.to_bf16()
    elif precision == "fp16":
        learn.to_fp16()
    start = time.perf_counter()
    with learn.no_bar():
        learn.fit_one_cycle(cfg.epochs, cfg.lr, pct_start=cfg.pct_start, moms=cfg.moms)
    run_seconds = time.perf_counter() - start
    return {"epochs": timers[-1].epochs, "run_seconds": run_seconds, "valid_bs": valid_bs,
            "documents": {"train": len(train_docs), "valid": len(valid_docs)}}


def child_main(spec: dict) -> int:
    """Child mode: one training run; prints one JSON line with its figures."""
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    import fastai.text.all  # noqa: F401  (both children import the same modules before the baseline RSS)
    import torch

    import ulmfit.pretrain.train  # noqa: F401
    from ulmfit.config import load_config

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.cuda.reset_peak_memory_stats(device)
    baseline = _rss_mb()
    timers = install_timer()
    cfg = load_config(spec["config"], spec["overrides"])
    meta = json.loads((Path(spec["corpus"]) / "meta.json").read_text(encoding="utf-8"))
    run = (child_ulmfit if spec["pipeline"] == "ulmfit" else child_fastai)(spec, cfg, meta, device, timers)
    run |= _peak_mb(device)
    run |= {"baseline_rss_mb": baseline, "peak_rss_fit_mb": timers[-1].peak_rss_fit_mb,
            "mixed_precision": _precision(cfg, device), "torch_threads": torch.get_num_threads(),
            "config_values": cfg.to_dict()}
    print(RESULT_MARKER + json.dumps(run), flush=True)
    return 0


# --- the parent: run the children, assemble the results --------------------------------------------------------

def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_child(spec: dict) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    start = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                         env=os.environ | {"PYTHONUNBUFFERED": "1"})
    seconds = time.perf_counter() - start
    lines = [line for line in res.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if res.returncode != 0 or not lines:
        return {"failed": f"exit code {res.returncode}:\n{_tail(res.stderr)}", "child_seconds": round(seconds, 1)}
    return json.loads(lines[-1][len(RESULT_MARKER):]) | {"child_seconds": seconds}


def make_run(pipeline: str, config: str, repeat: int, corpus: str, meta: dict, child: dict) -> dict[str, Any]:
    run: dict[str, Any] = {"pipeline": pipeline, "config": config, "repeat": repeat}
    if "failed" in child:
        return run | child
    cfg = child["config_values"]
    epochs = child["epochs"]
    tokens = sum(e["tokens"] for e in epochs)
    seconds = sum(e["train_seconds"] for e in epochs)
    last = epochs[-1]
    rates = [x for e in epochs for x in e["batch_rates"]]
    median_rate = statistics.median(rates) if rates else None
    on_cuda = "peak_cuda_mb" in child
    run |= {
        "vocab_size": meta["vocab_size"], "bs": cfg["bs"], "bptt": cfg["bptt"], "valid_bs": child["valid_bs"],
        "epochs": cfg["epochs"], "lr": cfg["lr"],
        "tokens_per_s": round(tokens / seconds, 1),
        "peak_mem_mb": round(child["peak_mem_mb"], 1),
        "valid_ppl": round(last["valid_ppl"], 3),
        "valid_loss": round(last["valid_loss"], 5),
        "accuracy": round(last["accuracy"], 5),
        "tokens_seen": tokens,
        "train_seconds": round(seconds, 2),
        # per-batch figures resist bursts of load from other users of the machine; meaningless without a
        # per-batch synchronisation on CUDA, so left out there
        "batch_median_tokens_per_s": None if on_cuda or median_rate is None else round(median_rate, 1),
        "slow_batches_pct": None if on_cuda or not rates else
        round(100 * sum(r < median_rate / 2 for r in rates) / len(rates), 1),
        "run_seconds": round(child["run_seconds"], 2),
        "child_seconds": round(child["child_seconds"], 2),
        "peak_rss_mb": round(child["peak_rss_mb"], 1),
        "peak_rss_fit_mb": round(child["peak_rss_fit_mb"], 1),
        "baseline_rss_mb": round(child["baseline_rss_mb"], 1),
        "train_batches": len(rates),
        "mixed_precision": child["mixed_precision"],
        "torch_threads": child["torch_threads"],
        "corpus": corpus,
        "train_tokens": meta["tokens"]["train"],
        "valid_tokens": meta["tokens"]["valid"],
        "per_epoch": [{k: round(v, 4) if isinstance(v, float) else v for k, v in e.items() if k != "batch_rates"}
                      for e in epochs],
    }
    if on_cuda:
        run["peak_cuda_mb"] = round(child["peak_cuda_mb"], 1)
    if "documents" in child:
        run["documents"] = child["documents"]
    return run


def _median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def summarize(runs: list[dict[str, Any]], configs: list[str], config_values: dict[str, dict]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for config in configs:
        ok = {p: [r for r in runs if r["config"] == config and r["pipeline"] == p and "failed" not in r]
              for p in PIPELINES}
        keys = ("tokens_per_s", "batch_median_tokens_per_s", "peak_mem_mb", "valid_ppl", "tokens_seen",
                "train_seconds")
        median = {p: {k: _median(rs, k) for k in keys} | {"repeats": len(rs)} for p, rs in ok.items()}
        u, f = median["ulmfit"], median["fastai"]
        by_repeat = {(r["pipeline"], r["repeat"]): r for rs in ok.values() for r in rs}
        pairs = [(by_repeat["ulmfit", i], by_repeat["fastai", i]) for i in sorted({i for _, i in by_repeat})
                 if ("ulmfit", i) in by_repeat and ("fastai", i) in by_repeat]

        def ratio(key: str) -> float | None:
            return round(u[key] / f[key], 3) if u.get(key) and f.get(key) else None

        summary[config] = {
            "tokens_per_s_ratio": ratio("tokens_per_s"),
            "tokens_per_s_ratio_per_repeat": [round(a["tokens_per_s"] / b["tokens_per_s"], 3) for a, b in pairs],
            "batch_median_tokens_per_s_ratio": ratio("batch_median_tokens_per_s"),
            "valid_ppl_diff_pct": round((u["valid_ppl"] - f["valid_ppl"]) / f["valid_ppl"] * 100, 2)
            if u["valid_ppl"] and f["valid_ppl"] else None,
            "peak_mem_ratio": ratio("peak_mem_mb"),
            "median": {p: {k: (round(v, 3) if isinstance(v, float) else v) for k, v in m.items()}
                       for p, m in median.items()},
            "config_values": config_values.get(config),
        }
    return summary


def _f(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(runs: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    header = (f"{'config':<7} {'pipeline':<8} {'repeat':>6} {'bs':>4} {'bptt':>4} {'tokens seen':>11} "
              f"{'train s':>8} {'tokens/s':>9} {'batch-med':>9} {'slow %':>6} {'peak MB':>8} {'valid ppl':>9}")
    lines = [header, "-" * len(header)]
    for config, s in summary.items():
        for pipeline in PIPELINES:
            for r in (r for r in runs if r["config"] == config and r["pipeline"] == pipeline):
                head = f"{config:<7} {pipeline:<8} {r['repeat']:>6}"
                if "failed" in r:
                    lines.append(f"{head} FAILED: {r['failed'].splitlines()[-1][:80]}")
                    continue
                lines.append(f"{head} {r['bs']:>4} {r['bptt']:>4} {r['tokens_seen']:>11,} {r['train_seconds']:>8.1f} "
                             f"{r['tokens_per_s']:>9,.0f} {_f(r['batch_median_tokens_per_s'], '>9,.0f')} "
                             f"{_f(r['slow_batches_pct'], '>6.1f')} {r['peak_mem_mb']:>8.0f} {r['valid_ppl']:>9.2f}")
            m = s["median"][pipeline]
            if m["repeats"]:
                lines.append(f"{config:<7} {pipeline:<8} {'median':>6} {'':>4} {'':>4} {m['tokens_seen']:>11,.0f} "
                             f"{m['train_seconds']:>8.1f} {m['tokens_per_s']:>9,.0f} "
                             f"{_f(m['batch_median_tokens_per_s'], '>9,.0f')} {'':>6} {m['peak_mem_mb']:>8.0f} "
                             f"{m['valid_ppl']:>9.2f}")
    lines.append("")
    for config, s in summary.items():
        per_repeat = ", ".join(f"{x:.2f}" for x in s["tokens_per_s_ratio_per_repeat"]) or "-"
        lines.append(f"{config}: ulmfit/fastai tokens/s {_f(s['tokens_per_s_ratio'], '.2f')}x (per repeat "
                     f"{per_repeat}; batch medians {_f(s['batch_median_tokens_per_s_ratio'], '.2f')}x), valid ppl "
                     f"{_f(s['valid_ppl_diff_pct'], '+.1f')}%, peak memory {_f(s['peak_mem_ratio'], '.2f')}x")
    return "\n".join(lines)


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def parse_max_tokens(spec: str | None, configs: list[str], device: str) -> dict[str, int | None]:
    """`N` for every config, or `config=N,…`; `0`/`all` = no cap. Default: CPU_MAX_TOKENS on CPU, none on CUDA."""
    limits: dict[str, int | None] = {c: (CPU_MAX_TOKENS.get(c) if device == "cpu" else None) for c in configs}
    if spec is None:
        return limits
    for item in spec.split(","):
        name, _, value = item.rpartition("=")
        value = value.strip().lower()
        try:
            n = None if value in ("0", "all", "none") else int(float(value))
        except ValueError:
            _fail(f"--max-tokens takes N or config=N,… (N a number, 0 or 'all' for no cap), not '{item}'.")
        if n is not None and n <= 0:
            _fail(f"--max-tokens must be positive, not '{item}'.")
        if name and name.strip() not in configs:
            _fail(f"--max-tokens names config '{name.strip()}', which is not among --configs {','.join(configs)}.")
        for c in ([name.strip()] if name else configs):
            limits[c] = n
    return limits


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, help="corpus directory from `ulmfit prepare` [default: WikiText-2 "
                                                    "valid text prepared into a cache directory]")
    parser.add_argument("--configs", "--config", default="tiny,small",
                        help="named configs, comma-separated [default: tiny,small]")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] [default: cpu]")
    parser.add_argument("--epochs", type=int, default=1, help="epochs for every run [default: 1]")
    parser.add_argument("--bs", type=int, default=32, help="batch size (streams) [default: 32]")
    parser.add_argument("--bptt", type=int, default=70, help="sequence length [default: 70]")
    parser.add_argument("--repeats", type=int, default=2, help="runs per (config, pipeline) [default: 2]")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads in every run [default: torch's own choice, all cores]")
    default_caps = ",".join(f"{k}={v}" for k, v in CPU_MAX_TOKENS.items())
    parser.add_argument("--max-tokens", help=f"cap train tokens: N, or config=N,… (0/all: no cap) "
                                             f"[default on cpu: {default_caps}]")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override another config key for both pipelines (repeatable), e.g. lr=3e-3")
    parser.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB,
                        help="vocabulary of the default WikiText-2 corpus")
    parser.add_argument("--cache-dir", type=Path, default=None, help="where the default corpus is prepared "
                                                                     "[default: ~/.cache/ulmfit/train_speed]")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("epochs", "bs", "bptt", "repeats", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(json.loads(args.child))

    import torch

    from ulmfit.config import load_config
    from ulmfit.errors import UlmfitError

    started = dt.datetime.now().astimezone()
    t0 = time.perf_counter()
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            _fail(f"--device {args.device} asked for, but torch {torch.__version__} sees no CUDA GPU on this "
                  "machine; run with --device cpu.")
        try:
            dev = torch.device(args.device)
            if dev.index is None:  # torch.cuda.set_device (in the driver too) wants an index
                dev = torch.device("cuda", torch.cuda.current_device())
            device_name = torch.cuda.get_device_name(dev)
        except (RuntimeError, AssertionError, ValueError) as e:
            _fail(f"--device {args.device}: {e}")
        args.device = str(dev)
    elif args.device == "cpu":
        device_name = "cpu"
    else:
        _fail(f"--device must be cpu or cuda[:N], not '{args.device}'.")
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    overrides_extra: dict[str, str] = {}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep:
            _fail(f"--set takes key=value, not '{item}'.")
        overrides_extra[key.strip()] = value.strip()
    overrides = {"bs": args.bs, "bptt": args.bptt, "epochs": args.epochs} | overrides_extra
    config_values = {}
    for c in configs:
        try:
            config_values[c] = load_config(c, overrides).to_dict()
        except UlmfitError as e:
            _fail(str(e))
    limits = parse_max_tokens(args.max_tokens, configs, args.device)

    corpus = args.corpus or ensure_corpus(SHARED_TEXT, args.vocab_size, args.cache_dir or cache_root())
    meta = check_corpus(corpus)
    runs: list[dict[str, Any]] = []
    n = args.repeats * len(configs) * len(PIPELINES)
    with tempfile.TemporaryDirectory(prefix="train-speed-") as work:
        corpora = {}
        for c in configs:
            corpora[c] = corpus if limits[c] is None else truncate_corpus(corpus, meta, limits[c],
                                                                           Path(work) / f"{c}-{limits[c]}")
        for repeat in range(args.repeats):
            order = PIPELINES if repeat % 2 == 0 else PIPELINES[::-1]
            for c in configs:
                c_meta = json.loads((corpora[c] / "meta.json").read_text(encoding="utf-8"))
                for pipeline in order:
                    spec = {"pipeline": pipeline, "config": c, "overrides": overrides, "device": args.device,
                            "corpus": str(corpora[c]), "threads": args.threads}
                    label = str(corpus) + (f" (train.bin cut to {c_meta['tokens']['train']:,} tokens)"
                                           if corpora[c] != corpus else "")
                    run = make_run(pipeline, c, repeat, label, c_meta, run_child(spec))
                    runs.append(run)
                    head = f"[{len(runs)}/{n}] {c} {pipeline} repeat {repeat}"
                    if "failed" in run:
                        print(f"{head}: FAILED {run['failed']}", file=sys.stderr, flush=True)
                    else:
                        print(f"{head}: {run['tokens_per_s']:,.0f} tokens/s over {run['tokens_seen']:,} tokens "
                              f"({run['train_seconds']:.1f} s), peak {run['peak_mem_mb']:.0f} MB, "
                              f"valid ppl {run['valid_ppl']:.2f} [{run['child_seconds']:.0f} s in all]",
                              file=sys.stderr, flush=True)

    summary = summarize(runs, configs, config_values)
    seconds = time.perf_counter() - t0
    result = {
        "machine": machine_info(args.device),
        "device": device_name,
        "date": started.date().isoformat(),
        "notes": NOTES,
        "runs": runs,
        "summary": summary,
        "started": started.isoformat(timespec="seconds"),
        "benchmark_seconds": round(seconds, 1),
        "code": code_version(),
        "corpus": {"path": str(corpus), "vocab_size": meta["vocab_size"], "tokens": meta["tokens"],
                   "articles": meta.get("articles"), "source": meta.get("source"),
                   "max_tokens": {c: limits[c] for c in configs}},
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if argv is None else " ".join(argv),
    }
    write_json(args.out, result)
    print(format_table(runs, summary))
    print(f"benchmark took {seconds:.0f} s; results in {args.out}")
    return 1 if any("failed" in r for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
