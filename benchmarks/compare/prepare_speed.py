"""`ulmfit prepare` end to end against the pipeline a fastai user runs instead, on the same dumps, in one run.

For every dump in `../shared/data/*/wikipedia_xml/` (relative to the repository root; `--dumps GLOB` for others),
four pipelines run from the dump file to token ids, each as a child process tree of its own, on the same cores:

1. `ulmfit-sentencepiece`: `python -m ulmfit -q prepare LANG --dump DUMP --out TMP --workers W` (clean the dump,
   train a 15k SentencePiece model, write the ids).
2. `ulmfit-word`: the same with `--tokenizer word` (the language's segmenter, fastai's rules, a 60k vocabulary);
   skipped, with the reason, for a language without a word tokenizer (Japanese).
3. `peer-sentencepiece`, fastai_ulmfit's way: wikiextractor 3.1 (`--no-templates --json --processes W`; a dump it
   cannot read, xz or UTF-16, is first decompressed to UTF-8 XML by the same child, and that counts), then fastai's
   `SentencePieceTokenizer(lang, vocab_sz=15000)` set up on the texts, `tokenize_texts(n_workers=W)` with fastai's
   default rules, and `Numericalize(min_freq=3, max_vocab=60000)` set up and applied to every text.
4. `peer-word`: wikiextractor, then `tokenize_texts` with fastai's `SpacyTokenizer(lang)` and `Numericalize`;
   skipped, with fastai's error, where `spacy.blank(lang)` needs a package that is not installed (vi, ja).

Per run the JSON records wall seconds, CPU seconds (user + system of the whole child tree:
`resource.getrusage(RUSAGE_CHILDREN)` before and after, interpreter start and imports included), the peak summed
RSS and PSS of the tree (psutil, every 0.05 s), tokens written, and the peer's seconds per step. The `notes` field
defines every figure. Needs the benchmark extra (`pip install -e ".[bench]"`). Run from the repository root; it
takes tens of minutes on 2 cores:

    python benchmarks/compare/prepare_speed.py [--dumps GLOB] [--workers 2] [--out benchmarks/results/prepare_speed.json]
"""
from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from clean_quality import describe_dump, dump_lang, feed_child  # beside this script
from environment import code_version, machine_info  # beside this script

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"
DEFAULT_GLOB = str(SHARED_DATA / "*" / "wikipedia_xml" / "*")
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "prepare_speed.json"
SAMPLE_EVERY_S = 0.05
MB = 1e6
RESULT_MARKER = "PREPARE_SPEED_RESULT "
PIPELINES = ("ulmfit-sentencepiece", "ulmfit-word", "peer-sentencepiece", "peer-word")
PAIRS = {"sentencepiece": ("ulmfit-sentencepiece", "peer-sentencepiece"), "word": ("ulmfit-word", "peer-word")}

NOTES = {
    "xml_mb": "the dump's uncompressed XML in MB (1e6 bytes).",
    "wall_seconds": "wall time of the pipeline's child process, from start to exit (interpreter start included).",
    "cpu_seconds": "user + system CPU seconds of the child and every process it waited for (workers, "
                   "wikiextractor's processes), from resource.getrusage(RUSAGE_CHILDREN) before and after.",
    "peak_rss_mb / peak_pss_mb": "peak over the run of the summed RSS (PSS: pages shared between forked processes "
                                 "split among them) of the child and all its descendants, sampled every 0.05 s.",
    "tokens": "ids written: ulmfit meta.json tokens (train + valid, one xxbos per article); the peer's "
              "numericalized tokens of every text (fastai's rules add xxbos to each).",
    "articles": "articles tokenized: ulmfit's train + valid; the peer's texts from wikiextractor.",
    "chars": "characters of cleaned text tokenized: ulmfit meta.json cleaned chars (train + valid); the peer's "
             "wikiextractor texts. The two cleaners keep different amounts of text (see clean_quality.json).",
    "peer_steps": "the peer child's own wall seconds per step: extract (wikiextractor, with any decompression it "
                  "needed), setup (SentencePiece training, for the SentencePiece peer), tokenize (tokenize_texts), "
                  "numericalize (Numericalize setup and application).",
    "ulmfit_steps": "meta.json seconds and cpu_seconds per stage of the ulmfit run.",
    "speedup_cpu / speedup_wall": "the peer's CPU (wall) seconds / ulmfit's, per tokenizer kind (sentencepiece: "
                                  "ulmfit-sentencepiece vs peer-sentencepiece; word: ulmfit-word vs peer-word); "
                                  "above 1, ulmfit is faster. The summary gives their geometric mean and least "
                                  "value over the dumps where both ran.",
    "speedup_cpu_per_char": "the same CPU ratio per character of cleaned text each pipeline tokenized (peer CPU s "
                            "per char / ulmfit CPU s per char): the speed at equal text, where wikiextractor keeps "
                            "less of an article than ulmfit's cleaner.",
}


def find_dumps(pattern: str) -> list[Path]:
    if pattern == DEFAULT_GLOB and not SHARED_DATA.is_dir():
        sys.exit(f"prepare_speed: the shared data directory {SHARED_DATA} does not exist; pass --dumps GLOB.")
    dumps = sorted(Path(p).resolve() for p in glob.glob(pattern) if Path(p).is_file())
    if not dumps:
        sys.exit(f"prepare_speed: no dump files match {pattern}; pass --dumps GLOB naming Wikipedia XML dumps.")
    return dumps


# --- running and watching a child ---------------------------------------------------------------------------------

def run_measured(cmd: list[str]) -> dict[str, Any]:
    """Run `cmd` to the end: exit code, wall and CPU seconds, peak tree RSS/PSS in MB, stdout, stderr."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryFile("w+", encoding="utf-8") as out, \
            tempfile.TemporaryFile("w+", encoding="utf-8") as err:
        start = time.perf_counter()
        child = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        proc = psutil.Process(child.pid)
        peak_rss = peak_pss = 0
        while True:
            rss = pss = 0
            try:
                for p in [proc, *proc.children(recursive=True)]:
                    try:
                        mem = p.memory_full_info()
                        rss, pss = rss + mem.rss, pss + mem.pss
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            try:
                child.wait(timeout=SAMPLE_EVERY_S)
                break
            except subprocess.TimeoutExpired:
                continue
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        out.seek(0)
        err.seek(0)
        return {"rc": child.returncode, "wall_seconds": round(wall, 2),
                "cpu_seconds": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2),
                "peak_rss_mb": round(peak_rss / MB, 1), "peak_pss_mb": round(peak_pss / MB, 1),
                "stdout": out.read(), "stderr": err.read()}


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _measured(res: dict) -> dict:
    return {k: res[k] for k in ("wall_seconds", "cpu_seconds", "peak_rss_mb", "peak_pss_mb")}


# --- the pipelines ------------------------------------------------------------------------------------------------

def run_ulmfit(kind: str, dump: Path, lang: str, work: Path, workers: int) -> dict[str, Any]:
    from ulmfit.langs import get_lang

    if kind == "word" and get_lang(lang).word_tokenizer is None:
        return {"skipped": f"{get_lang(lang).name} has no word tokenizer in ulmfit; SentencePiece only"}
    out = work / f"ulmfit-{kind}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "ulmfit", "-q", "prepare", lang, "--dump", str(dump), "--out", str(out),
           "--workers", str(workers), "--tokenizer", kind]
    res = run_measured(cmd)
    if res["rc"] != 0:
        return {"failed": f"exit code {res['rc']}: {_tail(res['stderr'])}", "command": " ".join(cmd)}
    meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    shutil.rmtree(out, ignore_errors=True)
    return _measured(res) | {
        "articles": sum(meta["articles"].values()), "tokens": sum(meta["tokens"].values()),
        "chars": sum(meta["cleaned"]["chars"].values()),
        "vocab_size": meta["vocab_size"],
        "ulmfit_steps": {"seconds": meta["seconds"], "cpu_seconds": meta.get("cpu_seconds", {})}}


def run_peer(kind: str, dump: Path, lang: str, work: Path, workers: int, readable: bool) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--peer-child", str(dump), lang, kind, str(work),
           "--workers", str(workers)] + ([] if readable else ["--feed"])
    res = run_measured(cmd)
    lines = [line for line in res["stdout"].splitlines() if line.startswith(RESULT_MARKER)]
    if res["rc"] != 0 or not lines:
        return {"failed": f"exit code {res['rc']}: {_tail(res['stderr'])}", "command": " ".join(cmd)}
    child = json.loads(lines[-1][len(RESULT_MARKER):])
    if "skipped" in child:
        return {"skipped": child["skipped"]}
    return _measured(res) | child


def peer_child(dump: Path, lang: str, kind: str, work: Path, workers: int, feed: bool) -> int:
    """Child mode: wikiextractor, then fastai's tokenizer and Numericalize; one JSON line with the counts."""
    def emit(result: dict[str, Any]) -> int:
        print(RESULT_MARKER + json.dumps(result), flush=True)
        return 0

    from fastai.text.core import SentencePieceTokenizer, SpacyTokenizer, defaults, tokenize_texts
    from fastai.text.data import Numericalize

    steps = {}
    if kind == "word":
        try:
            tok = SpacyTokenizer(lang)
        except Exception as e:  # spacy.blank(lang) needs an extra package for some languages
            return emit({"skipped": f"fastai SpacyTokenizer('{lang}') failed: {type(e).__name__}: "
                                    f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}"})
    start = time.perf_counter()
    source = dump
    if feed:  # wikiextractor reads bz2, gz and plain UTF-8 XML only: decompress and re-encode the others first
        source = work / "peer-input.xml"
        feed_child(dump, source)
    extracted = work / "peer-extracted"
    shutil.rmtree(extracted, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "wikiextractor.WikiExtractor", str(source), "--no-templates", "--json",
                    "-o", str(extracted), "--processes", str(workers)], check=True, capture_output=True)
    texts = [json.loads(line)["text"] for path in sorted(extracted.rglob("wiki_*"))
             for line in path.read_text(encoding="utf-8").splitlines()]
    texts = [t for t in texts if t.strip()]
    steps["extract"] = time.perf_counter() - start
    if kind == "sentencepiece":
        start = time.perf_counter()
        tok = SentencePieceTokenizer(lang=lang, vocab_sz=15000, cache_dir=work / "peer-spm")
        tok.setup(texts, rules=defaults.text_proc_rules)
        steps["setup"] = time.perf_counter() - start
    start = time.perf_counter()
    tokens = tokenize_texts(texts, n_workers=workers, rules=defaults.text_proc_rules, tok=tok)
    steps["tokenize"] = time.perf_counter() - start
    start = time.perf_counter()
    num = Numericalize(min_freq=3, max_vocab=60000)
    num.setup(tokens)
    n_tokens = sum(len(num(t)) for t in tokens)
    steps["numericalize"] = time.perf_counter() - start
    return emit({"articles": len(texts), "tokens": n_tokens, "chars": sum(map(len, texts)),
                 "vocab_size": len(num.vocab),
                 "peer_steps": {k: round(v, 2) for k, v in steps.items()}})


# --- the report ---------------------------------------------------------------------------------------------------

def _geomean(values: list[float]) -> float | None:
    return round(math.exp(sum(map(math.log, values)) / len(values)), 3) if values else None


def benchmark_dump(dump: Path, workers: int, work: Path) -> dict[str, Any]:
    lang, info = dump_lang(dump), describe_dump(dump)
    row: dict[str, Any] = {"dump": str(dump.relative_to(SHARED_DATA) if dump.is_relative_to(SHARED_DATA) else dump),
                           "lang": lang, "xml_mb": round(info["xml_mb"], 2), "encoding": info["encoding"],
                           "runs": {}}
    for kind in ("sentencepiece", "word"):
        print(f"== {dump.name}: ulmfit {kind}", file=sys.stderr, flush=True)
        row["runs"][f"ulmfit-{kind}"] = run_ulmfit(kind, dump, lang, work, workers)
        print(f"== {dump.name}: wikiextractor + fastai {kind}", file=sys.stderr, flush=True)
        row["runs"][f"peer-{kind}"] = run_peer(kind, dump, lang, work, workers, info["wikiextractor_reads_it"])
    for kind, (ours, peer) in PAIRS.items():
        a, b = row["runs"][ours], row["runs"][peer]
        if "cpu_seconds" in a and "cpu_seconds" in b:
            row[f"speedup_cpu_{kind}"] = round(b["cpu_seconds"] / a["cpu_seconds"], 3)
            row[f"speedup_wall_{kind}"] = round(b["wall_seconds"] / a["wall_seconds"], 3)
            if a["chars"] and b["chars"]:
                row[f"speedup_cpu_per_char_{kind}"] = round(b["cpu_seconds"] / b["chars"] * a["chars"]
                                                            / a["cpu_seconds"], 3)
    return row


def summarize(rows: list[dict]) -> dict[str, Any]:
    summary = {}
    for kind in PAIRS:
        for what in ("cpu", "wall", "cpu_per_char"):
            values = [r[f"speedup_{what}_{kind}"] for r in rows if f"speedup_{what}_{kind}" in r]
            summary[f"speedup_{what}_{kind}"] = {"geomean": _geomean(values), "least": min(values, default=None),
                                                 "dumps": len(values)}
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dumps", default=DEFAULT_GLOB)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--peer-child", nargs=4, metavar=("DUMP", "LANG", "KIND", "WORK"), help=argparse.SUPPRESS)
    parser.add_argument("--feed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peer_child:
        dump, lang, kind, work = args.peer_child
        return peer_child(Path(dump), lang, kind, Path(work), args.workers, args.feed)
    load_start = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="prepare-speed-") as tmp:
        for dump in find_dumps(args.dumps):
            rows.append(benchmark_dump(dump, args.workers, Path(tmp)))
    result = {
        "benchmark": "prepare_speed",
        "date": dt.date.today().isoformat(),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "workers": args.workers,
        "machine": machine_info(),
        "load_average": {"start": [round(x, 2) for x in load_start], "end": [round(x, 2) for x in os.getloadavg()]},
        "code": code_version(),
        "notes": NOTES,
        "summary": summarize(rows),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    for r in rows:
        print(f"{r['dump']:<70} sp x{r.get('speedup_cpu_sentencepiece', '-')} CPU, "
              f"x{r.get('speedup_wall_sentencepiece', '-')} wall; word x{r.get('speedup_cpu_word', '-')} CPU, "
              f"x{r.get('speedup_wall_word', '-')} wall")
    print(json.dumps(result["summary"], indent=1))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
