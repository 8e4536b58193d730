"""`ulmfit prepare` on a dump of realistic size: throughput and memory over time, and the speed-up from 1 to 2
workers.

The dump is a multistream `.xml.bz2` of at least 2 GB of XML made by `make_multistream_dump.py` from the real
pages of a shared dump excerpt (fresh titles, so articles do not repeat exactly), written to `--work`, never into
the repository; an existing one there is reused. For each `--workers` count, the whole command runs in a child
process,

    python -m ulmfit -q prepare LANG --dump DUMP --out WORK/out-N --workers N

watched every `--every` seconds by this process (psutil): the summed RSS and PSS of the process and all its
descendants, how much cleaned text the run has written (the gzip'd `text/` files, growing as the extract stage
goes through the dump), and which stage is running (the run's `.stages.json`). Figures are defined in the
JSON's `notes`. Run from the repository root; it takes the better part of an hour on 2 cores:

    python benchmarks/compare/prepare_scale.py [--work /tmp/ulmfit-scale] [--lang vi] [--xml-gb 2.1] [--workers 1,2]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from environment import code_version, machine_info  # beside this script
from make_multistream_dump import load_pages, source_dumps, write_dump

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "prepare_scale.json"
MB = 1e6
TENTHS = 10

NOTES = {
    "dump": "the generated multistream dump: compressed bytes on disk, uncompressed XML bytes, pages (1 MB = 1e6 B).",
    "wall_seconds": "wall time of the whole `ulmfit prepare` child process, interpreter start included.",
    "cpu_seconds": "user + system CPU seconds of the child and all its worker processes "
                   "(resource.getrusage(RUSAGE_CHILDREN) before and after).",
    "stage_seconds / stage_cpu_seconds": "what the run's meta.json records per stage (extract = read, decompress, "
                                         "parse and clean the dump; tokenizer = train SentencePiece; encode = ids).",
    "peak_rss_mb / peak_pss_mb": "the highest summed RSS (PSS: shared pages split between the processes sharing "
                                 "them) over the process and all its descendants, over all samples.",
    "timeline": "samples [seconds since start, stage, summed RSS MB, summed PSS MB, MB of gzip'd cleaned text "
                "written].",
    "extract_tenths": "the extract stage's output (gzip'd cleaned text, written in dump order) cut into ten equal "
                      "parts: the XML MB/s of each (its share of the dump's XML / the seconds it took). The generated "
                      "dump repeats the same pages, so output grows in step with input.",
    "last_vs_first_tenth": "extract throughput in its last tenth / in its first (1.0: as fast at the end as at the "
                           "start).",
    "speedup": "wall seconds with 1 worker / with N workers, for the extract stage and for the whole command.",
}


def ensure_dump(work: Path, lang: str, xml_gb: float, gen_workers: int) -> Path:
    """The generated dump in `work` (made now if there is none), with the generator's summary beside it."""
    dumps = sorted(work.glob(f"{lang}wiki-*-pages-articles-multistream.xml.bz2"))
    if dumps:
        return dumps[0]
    print(f"generating a {xml_gb} GB multistream dump in {work}", file=sys.stderr, flush=True)
    header, pages = load_pages(source_dumps(lang))
    summary = write_dump(header, pages, work, f"{lang}wiki", int(xml_gb * 1e9), gen_workers)
    dump = Path(summary["dump"])
    _summary_file(dump).write_text(json.dumps(summary))
    return dump


def _summary_file(dump: Path) -> Path:
    return dump.with_name(dump.name + ".summary.json")


def describe(dump: Path) -> dict[str, Any]:
    from ulmfit.pretrain import multistream

    plan = multistream.plan(dump)
    if plan is None:
        sys.exit(f"prepare_scale: {dump} is not a multistream dump; delete it to have one generated.")
    if _summary_file(dump).is_file():
        summary = json.loads(_summary_file(dump).read_text())
        xml, pages = summary["xml_bytes"], summary["pages"]
    else:  # a dump made by hand with make_multistream_dump.py: measure it
        import bz2

        xml, pages = 0, None
        with bz2.open(dump, "rb") as f:
            while block := f.read(1 << 24):
                xml += len(block)
    return {"path": str(dump), "bytes": dump.stat().st_size, "xml_bytes": xml, "pages": pages,
            "ranges": len(plan.ranges)}


class Watcher(threading.Thread):
    """Samples a process tree: memory, the workers' reads, the stage."""

    def __init__(self, proc: psutil.Popen, work: Path, every: float):
        super().__init__(daemon=True)
        self.proc, self.work, self.every = proc, work, every
        self.stages_file = work / ".stages.json"
        self.samples: list[list] = []
        self.start_time = time.monotonic()
        self._written = 0.0

    def written(self) -> float:
        """MB of cleaned text written so far (the files under their temporary names, then their final ones)."""
        sizes = [f.stat().st_size for f in (self.work / "text").glob("*.txt.gz*") if f.exists()] \
            if (self.work / "text").is_dir() else []
        self._written = max(self._written, sum(sizes) / MB)
        return self._written

    def stage(self) -> str:
        try:
            done = json.loads(self.stages_file.read_text())
        except (OSError, ValueError):
            done = {}
        return next((s for s in ("extract", "tokenizer", "ids") if s not in done), "done")

    def run(self) -> None:
        while self.proc.poll() is None:
            rss = pss = 0
            try:
                children = self.proc.children(recursive=True)
                for p in [self.proc, *children]:
                    try:
                        mem = p.memory_full_info()
                        rss, pss = rss + mem.rss, pss + mem.pss
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        pass
            except psutil.NoSuchProcess:
                break
            try:
                written = self.written()
            except OSError:  # a file renamed between listing and stat
                written = self._written
            self.samples.append([round(time.monotonic() - self.start_time, 2), self.stage(), round(rss / MB, 1),
                                 round(pss / MB, 1), round(written, 3)])
            time.sleep(self.every)


def tenths(samples: list[list], xml_mb: float) -> list[float]:
    """XML MB/s in each tenth of the extract stage's output."""
    points = [(t, written) for t, stage, _, _, written in samples if stage == "extract"]
    if len(points) < 2 or not points[-1][1]:
        return []
    total = points[-1][1]
    xml_per_byte = xml_mb / total
    rates, start = [], points[0]
    for k in range(1, TENTHS + 1):
        goal = total * k / TENTHS
        end = next(p for p in points if p[1] >= goal)
        seconds = end[0] - start[0]
        rates.append(round((end[1] - start[1]) * xml_per_byte / seconds, 2) if seconds > 0 else None)
        start = end
    return rates


def run_prepare(dump: Path, lang: str, out: Path, workers: int, every: float, xml_mb: float) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out.parent / f".{out.name}.partial", ignore_errors=True)
    cmd = [sys.executable, "-m", "ulmfit", "-q", "prepare", lang, "--dump", str(dump), "--out", str(out),
           "--workers", str(workers)]
    print(f"running: {' '.join(cmd)}", file=sys.stderr, flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = psutil.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watcher = Watcher(proc, out.parent / f".{out.name}.partial", every)
    watcher.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - start
    watcher.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"prepare_scale: `ulmfit prepare` failed ({proc.returncode}):\n{err.decode()[-3000:]}")
    meta = json.loads((out / "meta.json").read_text())
    samples = watcher.samples
    rates = tenths(samples, xml_mb)
    return {
        "workers": workers,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
        "stage_seconds": meta["seconds"],
        "stage_cpu_seconds": meta.get("cpu_seconds", {}),
        "peak_rss_mb": max(s[2] for s in samples),
        "peak_pss_mb": max(s[3] for s in samples),
        "articles": meta["articles"], "tokens": meta["tokens"],
        "extract_tenths": rates,
        "last_vs_first_tenth": round(rates[-1] / rates[0], 3) if rates and rates[0] and rates[-1] else None,
        "peak_rss_mb_by_tenth_of_time": _peaks_by_tenth(samples),
        "timeline": samples[:: max(1, len(samples) // 400)],
    }


def _peaks_by_tenth(samples: list[list]) -> list[float]:
    """The peak summed RSS in each tenth of the run's time: flat when memory does not grow with the dump."""
    end = samples[-1][0]
    return [max((s[2] for s in samples if k * end / TENTHS <= s[0] <= (k + 1) * end / TENTHS), default=0.0)
            for k in range(TENTHS)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/ulmfit-scale"), help="where the dump and runs go")
    parser.add_argument("--lang", default="vi")
    parser.add_argument("--xml-gb", type=float, default=2.1)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between samples")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    dump = ensure_dump(args.work, args.lang, args.xml_gb, max(int(w) for w in args.workers.split(",")))
    info = describe(dump)
    runs = [run_prepare(dump, args.lang, args.work / f"out-{w}", int(w), args.every, info["xml_bytes"] / MB)
            for w in args.workers.split(",")]
    one = next((r for r in runs if r["workers"] == 1), None)
    for r in runs:
        if one is not None and r is not one:
            r["speedup"] = {"extract": round(one["stage_seconds"]["extract"] / r["stage_seconds"]["extract"], 2),
                            "command": round(one["wall_seconds"] / r["wall_seconds"], 2)}
    result = {
        "benchmark": "prepare_scale",
        "date": dt.date.today().isoformat(),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine_info(),
        "code": code_version(),
        "dump": {**info, "xml_mb": round(info["xml_bytes"] / MB, 1), "mb": round(info["bytes"] / MB, 1)},
        "notes": NOTES,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for r in runs:
        print(f"workers {r['workers']}: {r['wall_seconds']} s wall, {r['cpu_seconds']} CPU s, peak RSS "
              f"{r['peak_rss_mb']:.0f} MB (PSS {r['peak_pss_mb']:.0f}), extract tenths {r['extract_tenths']}, "
              f"last/first {r['last_vs_first_tenth']}, speed-up {r.get('speedup')}")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
