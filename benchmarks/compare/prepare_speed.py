"""Speed and memory of `ulmfit prepare` against the stock fastai tokenization path, on the same dumps, in one run.

For every dump (default: every file in `../shared/data/*/wikipedia_xml/`, relative to the repository root) three
pipelines run, each in its own child process so that its memory is its own:

1. `ulmfit-sentencepiece`: `python -m ulmfit -q prepare LANG --dump PATH --out TMP --workers W` into a fresh
   temporary directory (nothing cached): clean the dump, train a 15k SentencePiece model, write token ids.
2. `ulmfit-word`: the same with `--tokenizer word` (the language's word tokenizer + fastai rules, 60k vocabulary).
   Languages without a word tokenizer (Japanese) are recorded as skipped, with the reason.
3. `fastai`: the stock fastai path on the same cleaned text that run 1 wrote (`read_docs` of its `text/`, train and
   valid): `fastai.text.core.tokenize_texts(texts, n_workers=W, rules=None, tok=SpacyTokenizer(lang))`, then
   `Numericalize(min_freq=3, max_vocab=60000)` set up on the train tokens and applied to every document. Where
   fastai's `SpacyTokenizer` cannot be built for a language (`spacy.blank` needs an extra package), the run is
   recorded as skipped with the error.

Per run the JSON records:

- `tokens`: tokens written (ulmfit: meta.json `tokens.train + tokens.valid`; fastai: ids produced; both count
  the `xxbos` of each document). SentencePiece tokens are subwords, word/fastai tokens are words plus fastai's
  marker tokens, so `chars_per_s` (cleaned characters tokenized per second) is given too.
- `tokenize_seconds`: ulmfit: meta.json `seconds.tokenizer + seconds.encode` (the word path has only `encode`);
  fastai: wall time of `tokenize_texts` + `Numericalize` setup + numericalizing every document.
  `tokens_per_s = tokens / tokenize_seconds`: the stage that differs, since both start from cleaned text.
- `encode_tokens_per_s`: tokens / the seconds spent encoding with a tokenizer already built (ulmfit:
  `seconds.encode`; fastai: `tokenize_texts` + numericalizing). SentencePiece trains on a capped sample of
  sentences, so on a corpus far larger than these excerpts this is the rate that dominates.
- `total_seconds`: ulmfit: wall time of the child process (interpreter start and imports included); fastai: the
  ulmfit SentencePiece run's `seconds.extract` (the cleaning whose output it reuses) + its own tokenize seconds.
  `mb_per_s = dump_mb / total_seconds`, with `dump_mb` the compressed file size on disk (1 MB = 1e6 bytes);
  `xml_mb` is the uncompressed size.
- `peak_rss_mb`: the peak, over the child's life, of the summed RSS of the child and all its descendants (worker
  processes), sampled every 0.05 s with psutil from this process. Pages shared by forked workers are counted once
  per process, as RSS does; `peak_pss_mb` sums PSS instead, which splits shared pages between their sharers.

Run from the repository root (takes several minutes on 2 cores):

    python benchmarks/prepare_speed.py [--dumps GLOB] [--workers 2] [--out benchmarks/results/prepare_speed.json]
"""
from __future__ import annotations

import argparse
import bz2
import datetime as dt
import glob
import gzip
import json
import lzma
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable

import psutil

from environment import code_version, machine_info  # beside this script
from ulmfit.files import write_json

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"
DEFAULT_GLOB = str(SHARED_DATA / "*" / "wikipedia_xml" / "*")
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "prepare_speed.json"
SAMPLE_EVERY_S = 0.05
MB = 1e6
RESULT_MARKER = "PREPARE_SPEED_RESULT "
FASTAI_MIN_FREQ = 3
FASTAI_MAX_VOCAB = 60_000
PIPELINES = ("ulmfit-sentencepiece", "ulmfit-word", "fastai")

NOTES = {
    "tokens": "tokens written: ulmfit = meta.json tokens.train + tokens.valid; fastai = ids produced by "
              "Numericalize over train + valid. Both count one xxbos per document. SentencePiece tokens are "
              "subwords; word/fastai tokens are words plus fastai marker tokens (xxmaj, xxup, ...).",
    "tokenize_seconds": "ulmfit-sentencepiece: meta.json seconds.tokenizer + seconds.encode; ulmfit-word: "
                        "seconds.encode (tokenize, build vocabulary, write ids); fastai: wall time of "
                        "tokenize_texts(n_workers=W, rules=None, tok=SpacyTokenizer(lang)) + "
                        f"Numericalize(min_freq={FASTAI_MIN_FREQ}, max_vocab={FASTAI_MAX_VOCAB}) setup on the "
                        "train tokens + numericalizing every train and valid document.",
    "tokens_per_s": "tokens / tokenize_seconds: the stage that differs; every pipeline starts from the same "
                    "cleaned text.",
    "chars_per_s": "characters of cleaned text / tokenize_seconds (same text for all pipelines, so comparable "
                   "across token units).",
    "total_seconds": "ulmfit: wall time of the `python -m ulmfit prepare` child process, interpreter start and "
                     "imports included; fastai: seconds.extract of the ulmfit-sentencepiece run on the same dump "
                     "(the cleaning whose text/ output fastai reuses) + fastai's tokenize_seconds (its interpreter "
                     "start and imports are not counted).",
    "mb_per_s": "dump_mb / total_seconds; dump_mb = compressed dump file size on disk, 1 MB = 1e6 bytes; "
                "xml_mb = uncompressed size.",
    "encode_tokens_per_s": "tokens / encode_seconds, with the tokenizer already built: ulmfit: meta.json "
                           "seconds.encode (tokenize with the trained SentencePiece model or word vocabulary, write "
                           "ids); fastai: tokenize_texts + numericalizing (Numericalize setup left out). What a "
                           "large corpus costs once the SentencePiece model is trained on its sample of "
                           "sentences (training time does not grow with the corpus beyond that sample).",
    "peak_pss_mb": "like peak_rss_mb but summing PSS (proportional set size: a page shared by forked workers is "
                   "split between them), the memory the process tree really holds.",
    "peak_rss_mb": "peak over the child's life of the summed RSS of the child process and all its descendants "
                   f"(worker processes), sampled every {SAMPLE_EVERY_S} s with psutil; forked workers' shared "
                   "pages count once per process. The fastai child does not include the cleaning stage.",
    "stage_seconds": "ulmfit: meta.json seconds per stage; fastai: extract is the ulmfit-sentencepiece run's.",
}


# --- dumps ------------------------------------------------------------------------------------------------------

def find_dumps(pattern: str) -> list[Path]:
    """The dump files the glob names, sorted; exits with one clear sentence when there are none."""
    if pattern == DEFAULT_GLOB and not SHARED_DATA.is_dir():
        sys.exit(f"prepare_speed: the shared data directory {SHARED_DATA} does not exist; "
                 "put the dumps there or pass --dumps GLOB.")
    dumps = sorted(Path(p).resolve() for p in glob.glob(pattern) if Path(p).is_file())
    if not dumps:
        sys.exit(f"prepare_speed: no dump files match {pattern}; pass --dumps GLOB naming Wikipedia XML dumps.")
    return dumps


def dump_lang(path: Path) -> str:
    """The language code of a dump: `xxwiki-…` in its name, else the `data/LANG/wikipedia_xml/` folder."""
    match = re.match(r"([a-z][a-z0-9_-]*?)wiki-", path.name)
    if match:
        return match.group(1).replace("_", "-")
    if path.parent.name == "wikipedia_xml":
        return path.parent.parent.name
    sys.exit(f"prepare_speed: cannot tell the language of {path}; name it LANGwiki-… or put it in "
             "data/LANG/wikipedia_xml/.")


def _open_dump(path: Path) -> BinaryIO:
    name = path.name.lower()
    if name.endswith(".bz2"):
        return bz2.open(path, "rb")
    if name.endswith(".xz"):
        return lzma.open(path, "rb")
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def uncompressed_mb(path: Path) -> float:
    """The size of the dump's XML once decompressed, in MB (1e6 bytes)."""
    size = 0
    with _open_dump(path) as f:
        while chunk := f.read(1 << 20):
            size += len(chunk)
    return size / MB


def has_word_tokenizer(lang: str) -> tuple[bool, str]:
    """Whether `ulmfit prepare --tokenizer word` can run for the language, and why not."""
    from ulmfit.langs import get_lang

    language = get_lang(lang)
    if language.word_tokenizer is None:
        return False, (f"{language.name} ({lang}) has no word tokenizer in ulmfit "
                       "(prepare --tokenizer word refuses it); SentencePiece only")
    return True, ""


# --- measuring a child process ------------------------------------------------------------------------------------

def tree_memory(proc: psutil.Process) -> tuple[int, int]:
    """Summed RSS and PSS in bytes of a process and all its descendants (0 for the ones that are gone).

    PSS splits each page shared by forked workers between the processes sharing it, so its sum is the memory
    the tree really holds; summed RSS counts shared pages once per process.
    """
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    rss = pss = 0
    for p in procs:
        try:
            full = p.memory_full_info()
        except psutil.Error:
            continue
        rss += full.rss
        pss += getattr(full, "pss", full.rss)
    return rss, pss


def run_measured(cmd: list[str], cwd: Path) -> dict[str, Any]:
    """Run `cmd` to completion; its exit code, wall seconds, peak tree RSS and PSS in MB, stdout and stderr."""
    env = os.environ | {"_TYPER_STANDARD_TRACEBACK": "1"}  # plain tracebacks in the failure reasons
    with tempfile.TemporaryFile("w+", encoding="utf-8") as out, \
            tempfile.TemporaryFile("w+", encoding="utf-8") as err:
        start = time.perf_counter()
        child = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                 env=env)
        proc = psutil.Process(child.pid)
        peak_rss = peak_pss = 0
        while True:
            rss, pss = tree_memory(proc)
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            try:
                child.wait(timeout=SAMPLE_EVERY_S)
                break
            except subprocess.TimeoutExpired:
                continue
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        return {"rc": child.returncode, "seconds": wall, "peak_rss_mb": peak_rss / MB,
                "peak_pss_mb": peak_pss / MB, "stdout": out.read(),
                "stderr": err.read()}


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# --- the three pipelines ------------------------------------------------------------------------------------------

def run_ulmfit(pipeline: str, dump: Path, lang: str, out_dir: Path, workers: int) -> dict[str, Any]:
    """`python -m ulmfit prepare` in a child process; the run's figures (or `failed`) and its meta.json."""
    cmd = [sys.executable, "-m", "ulmfit", "-q", "prepare", lang, "--dump", str(dump), "--out", str(out_dir),
           "--workers", str(workers)]
    if pipeline == "ulmfit-word":
        cmd += ["--tokenizer", "word"]
    res = run_measured(cmd, ROOT)
    meta_path = out_dir / "meta.json"
    if res["rc"] != 0 or not meta_path.exists():
        return {"failed": f"exit code {res['rc']}: {_tail(res['stderr'])}", "command": " ".join(cmd)}
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    seconds = meta["seconds"]
    return {
        "articles": sum(meta["articles"].values()),
        "chars": sum(meta["cleaned"]["chars"].values()),
        "tokens": sum(meta["tokens"].values()),
        "vocab_size": meta["vocab_size"],
        "tokenize_seconds": seconds.get("tokenizer", 0.0) + seconds["encode"],
        "encode_seconds": seconds["encode"],
        "total_seconds": res["seconds"],
        "peak_rss_mb": res["peak_rss_mb"],
        "peak_pss_mb": res["peak_pss_mb"],
        "stage_seconds": seconds,
    }


def run_fastai(text_dir: Path, lang: str, workers: int, extract_seconds: float) -> dict[str, Any]:
    """The stock fastai path on cleaned text, in a child process (this script's `--fastai-child` mode)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--fastai-child", str(text_dir), lang,
           "--workers", str(workers)]
    res = run_measured(cmd, ROOT)
    lines = [line for line in res["stdout"].splitlines() if line.startswith(RESULT_MARKER)]
    if res["rc"] != 0 or not lines:
        return {"failed": f"exit code {res['rc']}: {_tail(res['stderr'])}", "command": " ".join(cmd)}
    child = json.loads(lines[-1][len(RESULT_MARKER):])
    if "skipped" in child:
        return {"skipped": child["skipped"]}
    tokenize = child["tokenize"] + child["numericalize_setup"] + child["numericalize"]
    return {
        "articles": child["articles"],
        "chars": child["chars"],
        "tokens": child["tokens"],
        "vocab_size": child["vocab_size"],
        "tokenize_seconds": tokenize,
        "encode_seconds": child["tokenize"] + child["numericalize"],
        "total_seconds": extract_seconds + tokenize,
        "peak_rss_mb": res["peak_rss_mb"],
        "peak_pss_mb": res["peak_pss_mb"],
        "stage_seconds": {"extract": extract_seconds, "tokenize": child["tokenize"],
                          "numericalize_setup": child["numericalize_setup"],
                          "numericalize": child["numericalize"]},
    }


def fastai_child(text_dir: Path, lang: str, workers: int) -> int:
    """Child mode: tokenize and numericalize `text_dir`'s train + valid the stock fastai way; print one JSON line."""
    from fastai.text.core import SpacyTokenizer, tokenize_texts
    from fastai.text.data import Numericalize

    from ulmfit.pretrain.corpus import Corpus

    def emit(result: dict[str, Any]) -> int:
        print(RESULT_MARKER + json.dumps(result), flush=True)
        return 0

    try:
        tok = SpacyTokenizer(lang)
    except Exception as e:  # spacy.blank(lang) needs an extra package for some languages
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return emit({"skipped": f"fastai SpacyTokenizer('{lang}') failed: {type(e).__name__}: {reason}"})
    corpus = Corpus(text_dir.parent)  # the corpus directory whose cleaned text/ this is
    train = list(corpus.read_docs("train"))
    valid = list(corpus.read_docs("valid"))

    start = time.perf_counter()
    toks = tokenize_texts(train + valid, n_workers=workers, rules=None, tok=tok)
    tokenized = time.perf_counter()
    num = Numericalize(min_freq=FASTAI_MIN_FREQ, max_vocab=FASTAI_MAX_VOCAB)
    num.setup(toks[:len(train)])
    set_up = time.perf_counter()
    n_ids = sum(len(num(t)) for t in toks)
    done = time.perf_counter()
    return emit({
        "articles": len(train) + len(valid),
        "chars": sum(map(len, train)) + sum(map(len, valid)),
        "tokens": n_ids,
        "vocab_size": len(num.vocab),
        "tokenize": tokenized - start,
        "numericalize_setup": set_up - tokenized,
        "numericalize": done - set_up,
    })


# --- assembling the results ---------------------------------------------------------------------------------------

def finish_run(pipeline: str, dump: Path, lang: str, dump_mb: float, xml_mb: float,
               figures: dict[str, Any]) -> dict[str, Any]:
    """One `runs` entry: the run's figures plus the rates derived from them, or the skip/failure reason."""
    run: dict[str, Any] = {"pipeline": pipeline, "dump": dump.name, "lang": lang}
    if "skipped" in figures or "failed" in figures:
        return run | figures
    run |= {"dump_mb": round(dump_mb, 3), "xml_mb": round(xml_mb, 3), "articles": figures["articles"],
            "tokens": figures["tokens"], "chars": figures["chars"], "vocab_size": figures["vocab_size"],
            "tokenize_seconds": round(figures["tokenize_seconds"], 3),
            "total_seconds": round(figures["total_seconds"], 3),
            "mb_per_s": round(dump_mb / figures["total_seconds"], 4),
            "tokens_per_s": round(figures["tokens"] / figures["tokenize_seconds"]),
            "encode_tokens_per_s": round(figures["tokens"] / figures["encode_seconds"]),
            "chars_per_s": round(figures["chars"] / figures["tokenize_seconds"]),
            "peak_rss_mb": round(figures["peak_rss_mb"], 1),
            "peak_pss_mb": round(figures["peak_pss_mb"], 1),
            "stage_seconds": {k: round(v, 3) for k, v in figures["stage_seconds"].items()}}
    return run


def _geomean(values: list[float]) -> float | None:
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def ratio_summary(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """ulmfit-sentencepiece ÷ fastai of `key` per dump, and their geometric mean over dumps where both ran."""
    by = {(r["pipeline"], r["dump"]): r for r in runs if key in r}
    per_dump = {}
    for (pipeline, dump), run in by.items():
        other = by.get(("fastai", dump))
        if pipeline == "ulmfit-sentencepiece" and other and other[key] > 0:
            per_dump[dump] = round(run[key] / other[key], 3)
    mean = _geomean(list(per_dump.values()))
    return {"per_dump": per_dump, "geometric_mean": round(mean, 3) if mean is not None else None,
            "dumps_compared": len(per_dump)}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    measured = [r for r in runs if "peak_rss_mb" in r]
    peak = max(measured, key=lambda r: r["peak_rss_mb"], default=None)
    return {
        "sentencepiece_vs_fastai_tokens_per_s": ratio_summary(runs, "tokens_per_s"),
        "sentencepiece_vs_fastai_chars_per_s": ratio_summary(runs, "chars_per_s"),
        "sentencepiece_vs_fastai_encode_tokens_per_s": ratio_summary(runs, "encode_tokens_per_s"),
        "max_peak_rss_mb": peak["peak_rss_mb"] if peak else None,
        "max_peak_rss_run": f"{peak['pipeline']} on {peak['dump']}" if peak else None,
        "max_peak_rss_mb_by_pipeline": {
            p: max((r["peak_rss_mb"] for r in measured if r["pipeline"] == p), default=None) for p in PIPELINES},
        "max_peak_pss_mb": max((r["peak_pss_mb"] for r in measured), default=None),
    }


# --- output -------------------------------------------------------------------------------------------------------

def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(runs: list[dict[str, Any]]) -> str:
    header = (f"{'pipeline':<21} {'dump':<34} {'lang':<4} {'dump MB':>8} {'xml MB':>7} {'articles':>8} "
              f"{'tokens':>10} {'tok s':>7} {'total s':>7} {'MB/s':>6} {'tokens/s':>9} {'peak MB':>8}")
    lines = [header, "-" * len(header)]
    for r in runs:
        name = r["dump"] if len(r["dump"]) <= 34 else r["dump"][:31] + "..."
        head = f"{r['pipeline']:<21} {name:<34} {r['lang']:<4}"
        if "skipped" in r or "failed" in r:
            why = ("skipped: " + r["skipped"]) if "skipped" in r else ("FAILED: " + r["failed"].splitlines()[-1])
            lines.append(f"{head} {why[:110]}")
            continue
        lines.append(f"{head} {r['dump_mb']:>8.2f} {r['xml_mb']:>7.1f} {r['articles']:>8,} {r['tokens']:>10,} "
                     f"{r['tokenize_seconds']:>7.1f} {r['total_seconds']:>7.1f} {r['mb_per_s']:>6.3f} "
                     f"{r['tokens_per_s']:>9,} {r['peak_rss_mb']:>8.0f}")
    return "\n".join(lines)


def progress(i: int, n: int, run: dict[str, Any]) -> None:
    head = f"[{i}/{n}] {run['pipeline']:<21} {run['dump']}"
    if "skipped" in run:
        tail = f"skipped: {run['skipped']}"
    elif "failed" in run:
        tail = f"FAILED: {run['failed']}"
    else:
        tail = (f"{run['total_seconds']:.1f} s total, {run['mb_per_s']:.3f} MB/s, {run['tokens_per_s']:,} tokens/s, "
                f"peak RSS {run['peak_rss_mb']:.0f} MB")
    print(f"{head}: {tail}", file=sys.stderr, flush=True)


# --- driver -------------------------------------------------------------------------------------------------------

def benchmark_dump(dump: Path, workers: int, work: Path, step: Callable[[dict[str, Any]], None]) -> list[dict]:
    """The three pipelines on one dump; `step` is called with each finished run."""
    lang = dump_lang(dump)
    dump_mb = dump.stat().st_size / MB
    xml_mb = uncompressed_mb(dump)
    runs = []

    def record(pipeline: str, figures: dict[str, Any]) -> None:
        run = finish_run(pipeline, dump, lang, dump_mb, xml_mb, figures)
        runs.append(run)
        step(run)

    sp_dir = Path(tempfile.mkdtemp(prefix=f"{lang}-sp-", dir=work))
    try:
        sp = run_ulmfit("ulmfit-sentencepiece", dump, lang, sp_dir, workers)
        record("ulmfit-sentencepiece", sp)

        ok, why = has_word_tokenizer(lang)
        if ok:
            word_dir = Path(tempfile.mkdtemp(prefix=f"{lang}-word-", dir=work))
            try:
                record("ulmfit-word", run_ulmfit("ulmfit-word", dump, lang, word_dir, workers))
            finally:
                shutil.rmtree(word_dir, ignore_errors=True)
        else:
            record("ulmfit-word", {"skipped": why})

        if "failed" in sp:
            record("fastai", {"skipped": "the ulmfit-sentencepiece run failed, so there is no cleaned text to reuse"})
        else:
            record("fastai", run_fastai(sp_dir / "text", lang, workers, sp["stage_seconds"]["extract"]))
    finally:
        shutil.rmtree(sp_dir, ignore_errors=True)
    return runs


def run_benchmark(dumps: list[Path], workers: int) -> tuple[list[dict[str, Any]], float]:
    start = time.perf_counter()
    n = len(dumps) * len(PIPELINES)
    runs: list[dict[str, Any]] = []

    def step(run: dict[str, Any]) -> None:
        progress(len(runs) + 1, n, run)
        runs.append(run)

    with tempfile.TemporaryDirectory(prefix="prepare-speed-") as work:
        for dump in dumps:
            print(f"== {dump.name} ({dump_lang(dump)}, {dump.stat().st_size / MB:.2f} MB)", file=sys.stderr,
                  flush=True)
            benchmark_dump(dump, workers, Path(work), step)
    return runs, time.perf_counter() - start


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dumps", default=DEFAULT_GLOB,
                        help="glob of dump files [default: ../shared/data/*/wikipedia_xml/* from the repo root]")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for every pipeline [default: 2]")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument("--fastai-child", nargs=2, metavar=("TEXT_DIR", "LANG"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.fastai_child:
        text_dir, lang = args.fastai_child
        return fastai_child(Path(text_dir), lang, args.workers)

    dumps = find_dumps(args.dumps)
    started = dt.datetime.now().astimezone()
    code = code_version()
    runs, seconds = run_benchmark(dumps, args.workers)
    result = {
        "machine": machine_info(),
        "date": started.date().isoformat(),
        "started": started.isoformat(timespec="seconds"),
        "benchmark_seconds": round(seconds, 1),
        "workers": args.workers,
        "code": code,
        "dumps_glob": args.dumps,
        "notes": NOTES,
        "runs": runs,
        "summary": summarize(runs),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, result)

    summary = result["summary"]
    ratio = summary["sentencepiece_vs_fastai_tokens_per_s"]
    print(format_table(runs))
    print()
    print(f"SentencePiece ÷ fastai tokens/s, geometric mean over {ratio['dumps_compared']} dumps: "
          f"{_fmt(ratio['geometric_mean'], '.2f')}x "
          f"(chars/s: {_fmt(summary['sentencepiece_vs_fastai_chars_per_s']['geometric_mean'], '.2f')}x)")
    encode = summary["sentencepiece_vs_fastai_encode_tokens_per_s"]
    print(f"the same, encoding only (tokenizer built): {_fmt(encode['geometric_mean'], '.2f')}x")
    print(f"max peak RSS: {_fmt(summary['max_peak_rss_mb'], '.0f')} MB ({summary['max_peak_rss_run']}); "
          f"max peak PSS: {_fmt(summary['max_peak_pss_mb'], '.0f')} MB")
    print(f"benchmark took {seconds:.0f} s; results in {args.out}")
    return 1 if any("failed" in r for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
