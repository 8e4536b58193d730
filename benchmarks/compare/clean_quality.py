"""Speed and quality of `ulmfit prepare`'s wikitext cleaner against wikiextractor, on the same dumps, in one run.

For every dump in `../shared/data/*/wikipedia_xml/` (relative to the repository root; `--dumps GLOB` for others)
each tool runs in a child process of its own, so that the CPU seconds counted are that process tree's alone
(user + system, from `resource.getrusage(RUSAGE_CHILDREN)` before and after; interpreter start included):

1. `ulmfit`: `DumpReader` + `clean_wikitext` over every namespace-0, non-redirect, non-empty page, the way
   `pretrain/sources.py`'s `DumpSource` feeds the workers, in one process; the cleaned articles go to a file.
2. `wikiextractor` (3.1.0, the `bench` extra: `pip install -e ".[bench]"`), run as fastai_ulmfit and MultiFiT
   run it: `python -m wikiextractor.WikiExtractor DUMP --no-templates --json -o TMP --processes 1`.
   It reads plain, `.bz2` and `.gz` UTF-8 XML only; other dumps (`.xz`, UTF-16) are decompressed and re-encoded
   to a temporary UTF-8 file by a child process first, and that child's CPU seconds are added to wikiextractor's,
   so both tools pay for decompression.
3. `baseline` (with `--baseline REV`): run 1 with `pretrain/clean.py` as it was at git revision REV, so the JSON
   shows the change against the code before it, measured in the same session.

Each run is repeated (`--repeat`, default 3) and the least CPU time is kept; the cleaned text is the same each
time. Figures per tool and dump, computed here from what the tool wrote, are defined in the JSON's `notes`.

Run from the repository root (a few minutes on 2 cores):

    python benchmarks/compare/clean_quality.py [--baseline REV] [--repeat 3] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import codecs
import datetime as dt
import glob
import importlib.util
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from ulmfit.files import DECOMPRESSION_ERRORS, open_compressed

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"
DEFAULT_GLOB = str(SHARED_DATA / "*" / "wikipedia_xml" / "*")
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "clean_quality.json"
MB = 1e6
CHUNK = 1 << 20
MIN_CHARS = 200  # `ulmfit prepare`'s default --min-chars
MARKUP = ("{{", "}}", "[[", "]]", "<ref", "{|", "&nbsp;", "''")
TABLE_ROW = ("{|", "|")
RESULT_MARKER = "CLEAN_QUALITY_RESULT "
# wikiextractor picks a decompressor by the file's extension and reads everything else as UTF-8 XML.
WIKIEXTRACTOR_READS = {"bz2": ".bz2", "gz": ".gz", None: ""}
_MAGIC = {b"BZh": "bz2", b"\xfd7zXZ\x00": "xz", b"\x1f\x8b": "gz"}
_DECLARED_ENCODING = re.compile(rb"""^<\?xml[^>]*encoding=["']([A-Za-z0-9._-]+)["']""")

NOTES = {
    "cpu_seconds": "user + system CPU seconds of the tool's child process and everything it waited for "
                   "(resource.getrusage(RUSAGE_CHILDREN) before and after), interpreter start and imports included; "
                   "the least of the repeated runs (all of them in cpu_seconds_runs). wikiextractor's include the "
                   "child that decompressed its input where it could not read the dump itself (feed_cpu_seconds).",
    "load_average": "the machine's 1, 5 and 15 minute load averages when the run started and ended: other work on "
                    "a shared machine inflates CPU seconds too (caches, shared cores), which is why each run is "
                    "repeated and the least kept.",
    "xml_mb": "the dump's uncompressed XML, in its own encoding, in MB (1e6 bytes); the same for both tools.",
    "xml_mb_per_s": "xml_mb / cpu_seconds: XML megabytes cleaned per CPU-second, i.e. per core.",
    "speed_ratio": "ulmfit xml_mb_per_s / wikiextractor xml_mb_per_s on the same dump (above 1: ulmfit is faster). "
                   "The summary's geometric mean and minimum leave out dumps where wikiextractor wrote no text: it "
                   "reads a dump's <siteinfo> first and finds no page in one without it (enwiki-table-markup).",
    "articles": "ulmfit: pages clean_wikitext returned with status ok (namespace 0, not a redirect, not a "
                "disambiguation page, at least min_chars characters); wikiextractor: documents with non-empty text.",
    "chars": "characters of the text as each tool writes it: ulmfit the article (its title line, then one paragraph "
             "or heading per line, as in the corpus's text/), wikiextractor the JSON `text` field (the title is in "
             "a field of its own, not counted). body_chars: ulmfit's without the title line, to compare with "
             "wikiextractor's.",
    "lines": "non-empty lines of that text (ulmfit's title line included).",
    "markup_lines": "lines containing any of " + ", ".join(MARKUP) + ": markup left in the text.",
    "table_row_lines": "lines starting with {| or |: table rows left in the text.",
    "statuses": "ulmfit only: pages per clean_wikitext status (ok, short, disambiguation, redirect, unparsable).",
    "baseline": "the ulmfit run with pretrain/clean.py taken from git revision `rev` (the code before the change "
                "measured here), on the same dumps in the same session, with the same figures per dump; its "
                "speed_ratio is against the wikiextractor run of this session.",
    "checks": "per dump: ulmfit at least as fast as wikiextractor per core (speed_ratio >= 1), no more markup lines "
              "than the baseline, and characters kept within 2% of the baseline's (or more).",
    "candidates": "parsers from PyPI measured for this cleaner before it was written, on the vi excerpt's 274 pages "
                  "(11.4 M characters of wikitext, 15.3 MB of XML), CPU seconds in one process: mwparserfromhell "
                  "0.7.2's C tokenizer alone 1.6 s (its tree builder, which the old cleaner also ran, took most of "
                  "the old cleaner's 9-17 s); tree-sitter-wikitext 0.1.3 (tree-sitter 0.26.1) 2.2 s to parse, 3.0 s "
                  "to parse and visit the nodes; wikitextparser 3.0.0 parse + plain_text() 6.3 s (single runs by hand, "
                  "pages already in memory; not re-run here). Each is near or above wikiextractor's whole run "
                  "(3-3.4 s with reading the dump) before any text is produced, so the cleaner uses linear "
                  "regular-expression and brace-matching passes instead and no longer uses mwparserfromhell.",
}


# --- dumps --------------------------------------------------------------------------------------------------------

def find_dumps(pattern: str) -> list[Path]:
    """The dump files the glob names, sorted; exits with one clear sentence when there are none."""
    if pattern == DEFAULT_GLOB and not SHARED_DATA.is_dir():
        sys.exit(f"clean_quality: the shared data directory {SHARED_DATA} does not exist; "
                 "put the dumps there or pass --dumps GLOB.")
    dumps = sorted(Path(p).resolve() for p in glob.glob(pattern) if Path(p).is_file())
    if not dumps:
        sys.exit(f"clean_quality: no dump files match {pattern}; pass --dumps GLOB naming Wikipedia XML dumps.")
    return dumps


def dump_lang(path: Path) -> str:
    """The language of a dump: `data/LANG/wikipedia_xml/`, else `LANGwiki-…` in its name."""
    if path.parent.name == "wikipedia_xml":
        return path.parent.parent.name
    match = re.match(r"([a-z][a-z0-9_-]*?)wiki-", path.name)
    if match:
        return match.group(1).replace("_", "-")
    sys.exit(f"clean_quality: cannot tell the language of {path}; name it LANGwiki-… or put it in "
             "data/LANG/wikipedia_xml/.")


def compression(path: Path) -> str | None:
    """"bz2", "xz" or "gz" by the file's first bytes (as `DumpReader` goes by content), None for plain XML."""
    with open(path, "rb") as f:
        magic = f.read(6)
    return next((name for prefix, name in _MAGIC.items() if magic.startswith(prefix)), None)


def read_xml(path: Path) -> Iterator[bytes]:
    """The dump's XML bytes in chunks, decompressed; a truncated compressed stream yields what it holds (the
    excerpts are cut off)."""
    with open_compressed(path) as stream:
        while True:
            try:
                chunk = stream.read1(CHUNK)
            except DECOMPRESSION_ERRORS:
                return
            if not chunk:
                return
            yield chunk


def xml_encoding(head: bytes) -> str:
    """The XML's encoding from its byte-order mark or declaration (UTF-8 when it names none)."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    declared = _DECLARED_ENCODING.match(head.lstrip(b"\xef\xbb\xbf"))
    return declared.group(1).decode().lower() if declared else "utf-8"


def describe_dump(path: Path) -> dict[str, Any]:
    """Size on disk and uncompressed, encoding, and whether wikiextractor can read the file as it is."""
    size = 0
    head = b""
    for chunk in read_xml(path):
        head = head or chunk[:200]
        size += len(chunk)
    encoding = xml_encoding(head)
    kind = compression(path)
    readable = (encoding in ("utf-8", "utf8") and kind in WIKIEXTRACTOR_READS
                and path.name.endswith(WIKIEXTRACTOR_READS[kind]))
    return {"dump_mb": path.stat().st_size / MB, "xml_mb": size / MB, "encoding": encoding,
            "compression": kind, "wikiextractor_reads_it": readable}


# --- children -----------------------------------------------------------------------------------------------------

def run_child(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    """Run `cmd` to the end; the CPU seconds (user + system) of its process tree, and the finished process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, done


def _check(done: subprocess.CompletedProcess, what: str) -> None:
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{what} failed with exit code {done.returncode}:\n{tail}")


def ulmfit_child(dump: Path, lang: str, out: Path, cleaner: Path | None) -> int:
    """Child mode: clean every article of the dump as `DumpSource` + the workers do; write the articles to `out`,
    separated by blank lines; print the statuses as one JSON line."""
    from ulmfit.langs import get_lang
    from ulmfit.pretrain.dump import DumpReader

    if cleaner is None:
        from ulmfit.pretrain import clean
    else:  # the baseline: clean.py as it was at another revision
        spec = importlib.util.spec_from_file_location("baseline_clean", cleaner)
        clean = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(clean)
    disambiguation = get_lang(lang).disambiguation
    reader = DumpReader(dump)
    config = None
    statuses: dict[str, int] = {}
    with open(out, "w", encoding="utf-8") as f:
        for page in reader:
            if page.ns != 0 or page.redirect or not page.text.strip():
                continue
            if config is None:
                config = clean.CleanConfig.for_dump(reader.info.namespaces, disambiguation, MIN_CHARS)
            text, status = clean.clean_wikitext(page.title, page.text, config)
            statuses[status] = statuses.get(status, 0) + 1
            if text is not None:
                f.write(text + "\n\n")
    print(RESULT_MARKER + json.dumps(statuses), flush=True)
    return 0


def feed_child(dump: Path, out: Path) -> int:
    """Child mode: the dump's XML, decompressed and re-encoded to UTF-8, into `out` (wikiextractor's input)."""
    encoding = None
    with open(out, "wb") as f:
        decoder = None
        for chunk in read_xml(dump):
            if decoder is None:
                encoding = xml_encoding(chunk[:200])
                decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
            f.write(decoder.decode(chunk).encode("utf-8"))
    print(RESULT_MARKER + json.dumps({"encoding": encoding}), flush=True)
    return 0


# --- the tools ----------------------------------------------------------------------------------------------------

def run_ulmfit(dump: Path, lang: str, work: Path, repeat: int, cleaner: Path | None = None) -> dict[str, Any]:
    out = work / "ulmfit.txt"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--ulmfit-child", str(dump), lang, str(out)]
    if cleaner is not None:
        cmd += ["--cleaner", str(cleaner)]
    runs = []
    for _ in range(repeat):
        cpu, done = run_child(cmd)
        _check(done, "the ulmfit run")
        runs.append(cpu)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    statuses = json.loads(lines[-1][len(RESULT_MARKER):])
    texts = [t for t in out.read_text(encoding="utf-8").split("\n\n") if t.strip()]
    return {"cpu_seconds_runs": runs, "texts": texts, "statuses": statuses}


def run_wikiextractor(dump: Path, readable: bool, work: Path, repeat: int) -> dict[str, Any]:
    runs, feeds = [], []
    for _ in range(repeat):
        source, feed_cpu = dump, 0.0
        if not readable:
            source = work / "wikiextractor-input.xml"
            feed_cpu, done = run_child([sys.executable, str(Path(__file__).resolve()), "--feed-child", str(dump),
                                        str(source)])
            _check(done, "decompressing the dump for wikiextractor")
        out = work / "wikiextractor"
        shutil.rmtree(out, ignore_errors=True)
        cpu, done = run_child([sys.executable, "-m", "wikiextractor.WikiExtractor", str(source), "--no-templates",
                               "--json", "-o", str(out), "--processes", "1"])
        _check(done, "wikiextractor")
        runs.append(cpu + feed_cpu)
        feeds.append(feed_cpu)
    texts = []
    for path in sorted(out.rglob("wiki_*")):
        for line in path.read_text(encoding="utf-8").splitlines():
            text = json.loads(line)["text"]
            if text.strip():
                texts.append(text)
    return {"cpu_seconds_runs": runs, "feed_cpu_seconds_runs": feeds if not readable else None, "texts": texts}


def figures(run: dict[str, Any], xml_mb: float) -> dict[str, Any]:
    """The figures of one tool on one dump, from its CPU seconds and the texts it wrote."""
    lines = [line for text in run["texts"] for line in text.split("\n") if line.strip()]
    cpu = min(run["cpu_seconds_runs"])
    result = {
        "cpu_seconds": round(cpu, 3),
        "cpu_seconds_runs": [round(c, 3) for c in run["cpu_seconds_runs"]],
        "xml_mb_per_s": round(xml_mb / cpu, 3),
        "articles": len(run["texts"]),
        "chars": sum(map(len, run["texts"])),
        "lines": len(lines),
        "markup_lines": sum(any(m in line for m in MARKUP) for line in lines),
        "table_row_lines": sum(line.startswith(TABLE_ROW) for line in lines),
    }
    if run.get("feed_cpu_seconds_runs"):
        result["feed_cpu_seconds"] = round(min(run["feed_cpu_seconds_runs"]), 3)
    if "statuses" in run:  # ulmfit: its articles start with their title line
        result["body_chars"] = sum(len(text.split("\n", 1)[-1]) for text in run["texts"])
        result["statuses"] = run["statuses"]
    return result


def baseline_cleaner(rev: str, work: Path) -> Path:
    """`pretrain/clean.py` as it was at git revision `rev`, in a file of its own."""
    try:
        source = subprocess.run(["git", "show", f"{rev}:pretrain/clean.py"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"clean_quality: cannot read pretrain/clean.py at revision {rev} ({e}); pass a commit of this "
                 "repository to --baseline.")
    path = work / f"clean_{re.sub(r'[^A-Za-z0-9]', '_', rev)}.py"
    path.write_text(source, encoding="utf-8")
    return path


# --- the benchmark ------------------------------------------------------------------------------------------------

def benchmark_dump(dump: Path, repeat: int, baseline: Path | None, work: Path) -> tuple[dict, dict | None]:
    """The dump's row (ulmfit and wikiextractor) and, with a baseline cleaner, the baseline's figures."""
    lang = dump_lang(dump)
    info = describe_dump(dump)
    row: dict[str, Any] = {"dump": dump.name, "lang": lang, "dump_mb": round(info["dump_mb"], 3),
                           "xml_mb": round(info["xml_mb"], 3), "encoding": info["encoding"],
                           "compression": info["compression"],
                           "wikiextractor_input": "the dump file" if info["wikiextractor_reads_it"] else
                           "the dump decompressed and re-encoded to UTF-8 by a child process (CPU counted)"}
    row["ulmfit"] = figures(run_ulmfit(dump, lang, work, repeat), info["xml_mb"])
    row["wikiextractor"] = figures(run_wikiextractor(dump, info["wikiextractor_reads_it"], work, repeat),
                                   info["xml_mb"])
    row["speed_ratio"] = _ratio(row["ulmfit"], row["wikiextractor"])
    if baseline is None:
        return row, None
    before = figures(run_ulmfit(dump, lang, work, repeat, baseline), info["xml_mb"])
    return row, before | {"speed_ratio": _ratio(before, row["wikiextractor"])}


def _ratio(ours: dict[str, Any], theirs: dict[str, Any]) -> float:
    return round(ours["xml_mb_per_s"] / theirs["xml_mb_per_s"], 3)


def _geomean(values: list[float]) -> float | None:
    return round(math.exp(sum(map(math.log, values)) / len(values)), 3) if values else None


def summarize(rows: list[dict[str, Any]], baseline: dict[str, dict] | None) -> dict[str, Any]:
    """Speed ratios over the dumps where wikiextractor produced text (on the others its speed means nothing)."""
    compared = [r for r in rows if r["wikiextractor"]["articles"]]
    ratios = {r["dump"]: r["speed_ratio"] for r in compared}
    slowest = min(ratios, key=ratios.get, default=None)
    summary: dict[str, Any] = {
        "speed_ratio_geomean": _geomean(list(ratios.values())),
        "speed_ratio_min": ratios.get(slowest),
        "speed_ratio_min_dump": slowest,
        "dumps_compared": len(ratios),
        "dumps_without_wikiextractor_text": [r["dump"] for r in rows if not r["wikiextractor"]["articles"]],
    }
    if baseline:
        before = [baseline[dump]["speed_ratio"] for dump in ratios]
        summary["baseline_speed_ratio_geomean"] = _geomean(before)
        summary["baseline_speed_ratio_min"] = min(before, default=None)
        summary["checks"] = {r["dump"]: check(r, baseline[r["dump"]]) for r in rows}
        summary["all_checks_pass"] = all(all(c.values()) for c in summary["checks"].values())
    return summary


def check(row: dict[str, Any], before: dict[str, Any]) -> dict[str, bool]:
    new = row["ulmfit"]
    return {
        "at_least_as_fast_as_wikiextractor": row["speed_ratio"] >= 1.0,
        "markup_lines_not_above_baseline": new["markup_lines"] <= before["markup_lines"],
        "chars_within_2_percent_of_baseline": new["chars"] >= 0.98 * before["chars"],
    }


def format_table(rows: list[dict[str, Any]], baseline: dict[str, dict] | None = None) -> str:
    header = (f"{'dump':<28} {'xml MB':>7} {'tool':<13} {'CPU s':>7} {'MB/s':>6} {'articles':>8} {'chars':>10} "
              f"{'lines':>7} {'markup':>6} {'table':>5}")
    out = [header, "-" * len(header)]
    for r in rows:
        tools = {"ulmfit": r["ulmfit"], "baseline": (baseline or {}).get(r["dump"]),
                 "wikiextractor": r["wikiextractor"]}
        for tool, f in tools.items():
            if f is None:
                continue
            name = r["dump"] if len(r["dump"]) <= 28 else r["dump"][:25] + "..."
            out.append(f"{name:<28} {r['xml_mb']:>7.2f} {tool:<13} {f['cpu_seconds']:>7.2f} {f['xml_mb_per_s']:>6.2f} "
                       f"{f['articles']:>8,} {f['chars']:>10,} {f['lines']:>7,} {f['markup_lines']:>6} "
                       f"{f['table_row_lines']:>5}")
        out.append(f"{'':<28} {'':>7} {'ulmfit ÷ wikiextractor MB/s per core: ' + format(r['speed_ratio'], '.2f')}")
    return "\n".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dumps", default=DEFAULT_GLOB,
                        help="glob of dump files [default: ../shared/data/*/wikipedia_xml/* from the repo root]")
    parser.add_argument("--baseline", metavar="REV",
                        help="also measure pretrain/clean.py as it was at this git revision (the code before a change)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool and dump; the least CPU is kept [3]")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument("--ulmfit-child", nargs=3, metavar=("DUMP", "LANG", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--cleaner", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--feed-child", nargs=2, metavar=("DUMP", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.ulmfit_child:
        dump, lang, out = args.ulmfit_child
        return ulmfit_child(Path(dump), lang, Path(out), args.cleaner)
    if args.feed_child:
        dump, out = args.feed_child
        return feed_child(Path(dump), Path(out))
    if importlib.util.find_spec("wikiextractor") is None:
        sys.exit("clean_quality: wikiextractor is not installed; install the benchmark extra: "
                 'pip install -e ".[bench]".')

    from environment import code_version, library_version, machine_info  # beside this script
    from ulmfit.files import write_json

    dumps = find_dumps(args.dumps)
    started = dt.datetime.now().astimezone()
    load_at_start = os.getloadavg()
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    baseline: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="clean-quality-") as tmp:
        work = Path(tmp)
        cleaner = baseline_cleaner(args.baseline, work) if args.baseline else None
        for dump in dumps:
            print(f"== {dump.name}", file=sys.stderr, flush=True)
            row, before = benchmark_dump(dump, args.repeat, cleaner, work)
            rows.append(row)
            if before is not None:
                baseline[dump.name] = before
            print(format_table([row], baseline), file=sys.stderr, flush=True)
    result = {
        "machine": machine_info() | {name: library_version(name) for name in ("wikiextractor", "mwparserfromhell")},
        "date": started.date().isoformat(),
        "started": started.isoformat(timespec="seconds"),
        "benchmark_seconds": round(time.perf_counter() - start, 1),
        "load_average": {"start": [round(x, 2) for x in load_at_start],
                         "end": [round(x, 2) for x in os.getloadavg()]},
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "code": code_version(),
        "repeat": args.repeat,
        "min_chars": MIN_CHARS,
        "notes": NOTES,
        "dumps": rows,
        "baseline": {"rev": args.baseline, "dumps": baseline} if args.baseline else None,
        "summary": summarize(rows, baseline),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, result)
    summary = result["summary"]
    print(format_table(rows, baseline))
    print(f"\nulmfit ÷ wikiextractor XML MB/s per core over {summary['dumps_compared']} dumps: geometric mean "
          f"{summary['speed_ratio_geomean']:.2f}x, least {summary['speed_ratio_min']:.2f}x "
          f"({summary['speed_ratio_min_dump']})")
    if "checks" in summary:
        print(f"baseline ({args.baseline}) ÷ wikiextractor: geometric mean "
              f"{summary['baseline_speed_ratio_geomean']:.2f}x; all checks pass: {summary['all_checks_pass']}")
    print(f"results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
