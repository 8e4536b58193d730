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

- `tokens_per_s`: training tokens processed / training seconds. Training seconds run from fastai's
  `before_train` to `after_train` of each epoch (validation, checkpointing and set-up excluded; CUDA synchronised at
  both ends). Training tokens are the input ids of the training batches (`bs × seq_len` summed): for fastai
  counted by a callback, for ulmfit read from the driver's deterministic batch plan (`StreamLoader` for the same
  seed and epochs), which is what the driver's own per-epoch `tokens_per_s` counts (kept as `driver_tokens_per_s`).
- `tokens_seen`: training tokens over all epochs; the two pipelines differ only by the few ids each loader drops
  to make `bs` equal streams.
- `valid_ppl`: exp(mean valid loss) after the last epoch, by fastai's `Perplexity` metric. Each pipeline uses its own
  valid loader over the same `valid.bin` ids in order, cut into `valid_bs` streams (the driver's own choice, given
  to fastai too).
- `peak_mem_mb`: on CPU the child's peak resident set size (`getrusage(RUSAGE_SELF).ru_maxrss` at its end, MiB),
  which includes the interpreter, torch and fastai (`baseline_rss_mb` is the RSS right after the imports); on CUDA
  `torch.cuda.max_memory_allocated()` in MiB.

The corpus: `--corpus DIR` (any `ulmfit prepare` output), else WikiText-2's validation text from the shared data
(`../shared/data/en/wikitext-2/valid.txt.xz`), prepared once with `ulmfit prepare en --text … --vocab-size 8000`
into a cache directory. `--max-tokens` cuts `train.bin` to whole articles up to that many tokens (a temporary
corpus shared by both pipelines) so the slower configs fit a CPU time budget; on CPU the `small` config is cut by
default. The valid split is never cut.

Run from the repository root (CPU, about 15 minutes on 2 cores):

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
import math
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

ROOT = Path(__file__).resolve().parents[1]
SHARED_TEXT = ROOT.parent / "shared" / "data" / "en" / "wikitext-2" / "valid.txt.xz"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "train_speed.json"
DEFAULT_VOCAB = 8000
PIPELINES = ("ulmfit", "fastai")
RESULT_MARKER = "TRAIN_SPEED_RESULT "
# Train tokens per config on CPU, so that the whole default benchmark stays near 15 minutes on 2 cores.
CPU_MAX_TOKENS = {"small": 120_000}
MIB = 2**20

NOTES = {
    "tokens_per_s": "training tokens / training seconds. Training seconds: wall time from fastai's before_train to "
                    "after_train of each epoch, summed over epochs (validation, checkpoints, set-up and imports "
                    "excluded; torch.cuda.synchronize at both ends on CUDA). Training tokens: input ids of the "
                    "training batches (bs x seq_len summed); fastai: counted by a callback; ulmfit: the driver's "
                    "deterministic StreamLoader plan for the same seed/epochs (the driver's own per-epoch figure "
                    "is kept as driver_tokens_per_s).",
    "tokens_seen": "training tokens over all epochs (same train.bin for both pipelines; each loader drops < bs "
                   "ids per epoch to make bs equal streams).",
    "valid_ppl": "exp(mean valid cross-entropy) after the last epoch (fastai Perplexity metric); each pipeline's "
                 "own valid loader over the same valid.bin ids in order, cut into valid_bs streams (the ulmfit "
                 "driver's choice, used for fastai too), hidden state carried across batches.",
    "peak_mem_mb": "CPU: peak RSS of the run's own child process, getrusage(RUSAGE_SELF).ru_maxrss at its end, in "
                   "MiB; it includes Python, torch and fastai (baseline_rss_mb = RSS right after the imports). "
                   "CUDA: torch.cuda.max_memory_allocated() in MiB.",
    "train_seconds": "sum over epochs of the training seconds defined under tokens_per_s.",
    "run_seconds": "wall time of the whole training call in the child (fit incl. validation; ulmfit also writes "
                   "its model directory); child_seconds adds interpreter start, imports and data loading.",
    "median": "summary medians are over the repeats of a (config, pipeline) pair (the mean of the two for 2).",
    "tokens_per_s_ratio": "median ulmfit tokens_per_s / median fastai tokens_per_s; per_repeat pairs the runs of "
                          "the same repeat, which ran back to back.",
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
    from ulmfit.pretrain.train import read_corpus

    try:
        return read_corpus(corpus)
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


def child_ulmfit(spec: dict, cfg, meta: dict, device) -> dict[str, Any]:
    from ulmfit.pretrain.loader import StreamLoader
    from ulmfit.pretrain.train import _max_streams, pretrain

    corpus = Path(spec["corpus"])
    with tempfile.TemporaryDirectory(prefix="train-speed-ulmfit-") as tmp:
        start = time.perf_counter()
        result = pretrain(corpus, Path(tmp) / "run", cfg, direction="fwd", device=spec["device"])
        run_seconds = time.perf_counter() - start
    if result.get("stopped"):
        raise RuntimeError("the ulmfit driver stopped before the end of training")
    history = result["fwd"]
    # The tokens the driver trained on: its batch plan is a function of (seed, epoch) alone.
    plan = StreamLoader(corpus / "train.bin", meta["dtype"], cfg.bs, cfg.bptt, train=True,
                        variable_bptt=cfg.variable_bptt, seed=cfg.seed)
    tokens = []
    for epoch in range(cfg.epochs):
        plan.set_epoch(epoch)
        tokens.append(cfg.bs * sum(plan.lengths))
    epochs = [{"epoch": h["epoch"], "tokens": t, "train_seconds": h["train_seconds"], "valid_loss": h["valid_loss"],
               "valid_ppl": h["valid_ppl"], "accuracy": h["accuracy"], "driver_tokens_per_s": h["tokens_per_s"]}
              for h, t in zip(history, tokens)]
    return {"epochs": epochs, "run_seconds": run_seconds, "valid_bs": min(cfg.bs, _max_streams(corpus, meta, cfg)),
            "batches_per_epoch": len(plan)}


def child_fastai(spec: dict, cfg, meta: dict, device) -> dict[str, Any]:
    from functools import partial

    import numpy as np
    import torch
    from fastai.callback.core import Callback
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

    from ulmfit.pretrain.train import _max_streams

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

    class TrainTimer(Callback):
        """Training seconds (before_train → after_train) and training tokens of each epoch, and its metrics."""

        order = 70  # after the Recorder has the epoch's values

        def before_fit(self):
            self.epochs = []

        def before_train(self):
            self.tokens = 0
            _sync()
            self.start = time.perf_counter()

        def after_batch(self):
            if self.training:
                self.tokens += self.learn.xb[0].numel()

        def after_train(self):
            _sync()
            self.seconds = time.perf_counter() - self.start

        def after_epoch(self):
            values = dict(zip(self.learn.recorder.metric_names, self.learn.recorder.log))
            self.epochs.append({"epoch": self.epoch, "tokens": self.tokens, "train_seconds": self.seconds,
                                "valid_loss": float(values["valid_loss"]), "valid_ppl": float(values["perplexity"]),
                                "accuracy": float(values["accuracy"])})

    set_seed(cfg.seed)
    train_docs = documents(corpus / "train.bin")
    valid_docs = documents(corpus / "valid.bin")
    valid_bs = min(cfg.bs, _max_streams(corpus, meta, cfg))
    train_dl = LMDataLoader(train_docs, bs=cfg.bs, seq_len=cfg.bptt, shuffle=True)
    valid_dl = LMDataLoader(valid_docs, bs=valid_bs, seq_len=cfg.bptt)
    dls = DataLoaders(train_dl, valid_dl, device=device)
    torch.manual_seed(cfg.seed)  # as the driver does right before building the model: same initial weights
    model = get_language_model(AWD_LSTM, meta["vocab_size"], config=cfg.arch(), drop_mult=cfg.drop_mult).to(device)
    timer = TrainTimer()
    learn = TextLearner(dls, model, alpha=cfg.alpha, beta=cfg.beta, moms=cfg.moms, loss_func=CrossEntropyLossFlat(),
                        opt_func=partial(Adam, sqr_mom=cfg.adam_beta2, wd=cfg.wd), metrics=[accuracy, Perplexity()],
                        splitter=awd_lstm_lm_split, wd=cfg.wd, cbs=[GradientClip(cfg.clip), timer])
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
    return {"epochs": timer.epochs, "run_seconds": run_seconds, "valid_bs": valid_bs,
            "batches_per_epoch": len(train_dl), "documents": {"train": len(train_docs), "valid": len(valid_docs)}}


def child_main(spec: dict) -> int:
    """Child mode: one training run; prints one JSON line with its figures."""
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    import fastai.text.all  # noqa: F401  (both children import the same modules before the baseline RSS)
    import torch

    from ulmfit.config import load_config
    import ulmfit.pretrain.train  # noqa: F401

    device = torch.device(spec["device"])
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.cuda.reset_peak_memory_stats(device)
    baseline = _rss_mb()
    cfg = load_config(spec["config"], spec["overrides"])
    meta = json.loads((Path(spec["corpus"]) / "meta.json").read_text(encoding="utf-8"))
    run = (child_ulmfit if spec["pipeline"] == "ulmfit" else child_fastai)(spec, cfg, meta, device)
    run |= _peak_mb(device)
    run |= {"baseline_rss_mb": baseline, "mixed_precision": _precision(cfg, device),
            "torch_threads": torch.get_num_threads(), "config_values": cfg.to_dict()}
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
        "run_seconds": round(child["run_seconds"], 2),
        "child_seconds": round(child["child_seconds"], 2),
        "peak_rss_mb": round(child["peak_rss_mb"], 1),
        "baseline_rss_mb": round(child["baseline_rss_mb"], 1),
        "batches_per_epoch": child["batches_per_epoch"],
        "mixed_precision": child["mixed_precision"],
        "torch_threads": child["torch_threads"],
        "corpus": corpus,
        "train_tokens": meta["tokens"]["train"],
        "valid_tokens": meta["tokens"]["valid"],
        "per_epoch": [{k: round(v, 4) if isinstance(v, float) else v for k, v in e.items()} for e in epochs],
    }
    if "peak_cuda_mb" in child:
        run["peak_cuda_mb"] = round(child["peak_cuda_mb"], 1)
    if "documents" in child:
        run["documents"] = child["documents"]
    if pipeline == "ulmfit":
        run["driver_tokens_per_s"] = [e["driver_tokens_per_s"] for e in epochs]
    return run


def _median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def summarize(runs: list[dict[str, Any]], configs: list[str], config_values: dict[str, dict]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for config in configs:
        ok = {p: [r for r in runs if r["config"] == config and r["pipeline"] == p and "failed" not in r]
              for p in PIPELINES}
        median = {p: {k: _median(rs, k) for k in ("tokens_per_s", "peak_mem_mb", "valid_ppl", "tokens_seen",
                                                   "train_seconds")} | {"repeats": len(rs)}
                  for p, rs in ok.items()}
        u, f = median["ulmfit"], median["fastai"]
        both = u["repeats"] and f["repeats"]
        by_repeat = {(r["pipeline"], r["repeat"]): r for rs in ok.values() for r in rs}
        per_repeat = [round(by_repeat["ulmfit", i]["tokens_per_s"] / by_repeat["fastai", i]["tokens_per_s"], 3)
                      for i in sorted({r for _, r in by_repeat})
                      if ("ulmfit", i) in by_repeat and ("fastai", i) in by_repeat]
        summary[config] = {
            "tokens_per_s_ratio": round(u["tokens_per_s"] / f["tokens_per_s"], 3) if both else None,
            "tokens_per_s_ratio_per_repeat": per_repeat,
            "valid_ppl_diff_pct": round((u["valid_ppl"] - f["valid_ppl"]) / f["valid_ppl"] * 100, 2) if both else None,
            "peak_mem_ratio": round(u["peak_mem_mb"] / f["peak_mem_mb"], 3) if both else None,
            "median": {p: {k: (round(v, 3) if isinstance(v, float) else v) for k, v in m.items()}
                       for p, m in median.items()},
            "config_values": config_values.get(config),
        }
    return summary


def machine_info(device: str) -> dict[str, Any]:
    import importlib.metadata
    import platform

    import psutil
    import torch

    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "fastai": version("fastai"),
        "numpy": version("numpy"),
        "ulmfit": version("ulmfit"),
        "torch_threads": torch.get_num_threads(),
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda"] = torch.version.cuda
    return info


def code_version() -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    status = git("status", "--porcelain", "--", "ulmfit", "pretrain", "pyproject.toml")
    return {"commit": git("rev-parse", "HEAD"), "uncommitted_changes": None if status is None else bool(status)}


def format_table(runs: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    header = (f"{'config':<7} {'pipeline':<8} {'repeat':>6} {'bs':>4} {'bptt':>4} {'tokens seen':>11} "
              f"{'train s':>8} {'tokens/s':>9} {'peak MB':>8} {'valid ppl':>9}")
    lines = [header, "-" * len(header)]
    for config, s in summary.items():
        for pipeline in PIPELINES:
            for r in (r for r in runs if r["config"] == config and r["pipeline"] == pipeline):
                head = f"{config:<7} {pipeline:<8} {r['repeat']:>6}"
                if "failed" in r:
                    lines.append(f"{head} FAILED: {r['failed'].splitlines()[-1][:80]}")
                    continue
                lines.append(f"{head} {r['bs']:>4} {r['bptt']:>4} {r['tokens_seen']:>11,} {r['train_seconds']:>8.1f} "
                             f"{r['tokens_per_s']:>9,.0f} {r['peak_mem_mb']:>8.0f} {r['valid_ppl']:>9.2f}")
            m = s["median"][pipeline]
            if m["repeats"]:
                lines.append(f"{config:<7} {pipeline:<8} {'median':>6} {'':>4} {'':>4} {m['tokens_seen']:>11,.0f} "
                             f"{m['train_seconds']:>8.1f} {m['tokens_per_s']:>9,.0f} {m['peak_mem_mb']:>8.0f} "
                             f"{m['valid_ppl']:>9.2f}")
    lines.append("")
    for config, s in summary.items():
        ratio, diff, mem = s["tokens_per_s_ratio"], s["valid_ppl_diff_pct"], s["peak_mem_ratio"]
        lines.append(f"{config}: ulmfit/fastai tokens/s {'-' if ratio is None else f'{ratio:.2f}x'} "
                     f"(per repeat {', '.join(f'{x:.2f}' for x in s['tokens_per_s_ratio_per_repeat']) or '-'}), "
                     f"valid ppl {'-' if diff is None else f'{diff:+.1f}%'}, "
                     f"peak memory {'-' if mem is None else f'{mem:.2f}x'}")
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
        for c in ([name.strip()] if name else configs):
            limits[c] = n
    return limits


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, help="corpus directory from `ulmfit prepare` [default: WikiText-2 "
                                                    "valid text prepared into a cache directory]")
    parser.add_argument("--configs", "--config", default="tiny,small", help="named configs, comma-separated")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--bs", type=int, default=32)
    parser.add_argument("--bptt", type=int, default=70)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-tokens", help="cap train tokens: N, or config=N,… (0/all: no cap) "
                                             f"[default on cpu: {','.join(f'{k}={v}' for k, v in CPU_MAX_TOKENS.items())}]")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override another config key for both pipelines (repeatable), e.g. lr=3e-3")
    parser.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB,
                        help="vocabulary of the default WikiText-2 corpus")
    parser.add_argument("--cache-dir", type=Path, default=None, help="where the default corpus is prepared "
                                                                     "[default: ~/.cache/ulmfit/train_speed]")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("epochs", "bs", "bptt", "repeats"):
        if getattr(args, name) < 1:
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
            device_name = torch.cuda.get_device_name(torch.device(args.device))
        except (RuntimeError, AssertionError, ValueError) as e:
            _fail(f"--device {args.device}: {e}")
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
                            "corpus": str(corpora[c])}
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
