"""`ulmfit bench`: the ULMFiT recipe on a list of tasks, scored on their test splits, next to published figures.

For each task: load and check its data, fine-tune the language model on the task's text and train the forward
and backward classifiers (`finetune.py`), score fwd, bwd and their ensemble on the test split with the task's
metric, and record the scores in the classifier directory (so `ulmfit push` shows them). After every task the
tables are rewritten (`results.json`, `results.csv`, `results.md`) with the learning curves beside them
(`learning_curves.png`), so a long run that stops keeps what it finished, and a re-run with the same settings
skips the tasks whose classifier is already there.
"""
from __future__ import annotations

import csv
import io
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ulmfit.benchmarks.classifier import ENSEMBLE, Classifier
from ulmfit.benchmarks.finetune import FinetuneConfig, finetune, open_lm
from ulmfit.benchmarks.tasks import Task, limit_labels
from ulmfit.config import config_dict
from ulmfit.errors import UlmfitError
from ulmfit.files import atomic_write_text, output_lock, read_json, write_json
from ulmfit.pretrain.modeldir import CONFIG, ModelDir

log = logging.getLogger(__name__)

RESULTS = "results"
PLOT = "learning_curves.png"
CLASSIFIERS = "classifiers"
COLUMNS = ("task", "lang", "n_train", "n_test", "metric", "fwd", "bwd", "ensemble", "published_ulmfit",
           "published_best", "seconds")


@dataclass(frozen=True)
class BenchSettings:
    """What a bench run holds fixed for every task; a re-run with other settings must use another folder.

    `lms` maps a language code to the language model its tasks start from; the key "*" serves every language
    without its own. Without a language model (only with `pretrained=False`) a task starts from a word
    vocabulary of its own text.
    """

    lms: dict[str, str]
    config: FinetuneConfig
    pretrained: bool = True
    labels_limit: int | None = None
    directions: tuple[str, ...] = ("fwd", "bwd")
    seed: int = 0

    def lm_for(self, task: Task) -> str | None:
        lm = self.lms.get(task.lang, self.lms.get("*"))
        if lm is None and (self.pretrained or self.lms):
            have = ", ".join(sorted(self.lms)) or "none"
            raise UlmfitError(f"{task.id} is in '{task.lang}' and no language model is given for it (--lm for: "
                              f"{have}); add --lm {task.lang}=MODEL.")
        return lm

    def to_dict(self) -> dict:
        return {"lms": dict(self.lms), "config": config_dict(self.config), "pretrained": self.pretrained,
                "labels_limit": self.labels_limit, "directions": list(self.directions), "seed": self.seed}


def run_bench(tasks: Sequence[Task], settings: BenchSettings, out: Path | str, data_dir: Path | str | None = None,
              device: str | None = None, push_to: str | None = None, token: str | None = None) -> list[dict]:
    """Fine-tune and score every task in turn; returns the result rows (also written under `out`).

    `out` is locked while the run lasts. A run that stops, however it stops (kill -9 included), keeps the tasks it
    finished, and the same command goes on from there; a run that fails before it wrote anything leaves no `out`
    it created.

    `push_to` (a Hub user or organisation) publishes each task's classifier as it is finished, to
    `PUSH_TO/TASK-ulmfit` (see `hub_name`), with its card: the test scores in its model-index, the language model
    it started from, and the task's row of the table; the row records the repository and commit."""
    out = Path(out)
    if push_to is not None:  # before any training: a run of hours must not fail at its first push
        from huggingface_hub import get_token

        if not push_to or "/" in push_to:
            raise UlmfitError(f"--push-to takes the Hub user or organisation to publish under, not {push_to!r}.")
        if not (token or get_token()):
            raise UlmfitError("--push-to needs a Hugging Face token with write access: run `hf auth login` or set "
                              "HF_TOKEN.")
    with output_lock(out):
        created = not out.exists()
        try:
            return _run_tasks(tasks, settings, out, data_dir, device, push_to, token)
        except BaseException:
            if created:
                _remove_empty_folders(out)
            raise


def _remove_empty_folders(out: Path) -> None:
    """Remove `out` when it holds no file, only empty folders: what a failed run created and left empty."""
    if not out.is_dir() or any(p.is_file() or p.is_symlink() for p in out.rglob("*")):
        return
    for folder in sorted((p for p in out.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        folder.rmdir()
    out.rmdir()


def _run_tasks(tasks: Sequence[Task], settings: BenchSettings, out: Path, data_dir: Path | str | None,
               device: str | None, push_to: str | None, token: str | None) -> list[dict]:
    if not tasks:
        raise UlmfitError("no tasks to run; name some with --tasks (`ulmfit tasks` lists them) or give --task-file.")
    lms: dict[str, ModelDir] = {}  # each language model opened (downloaded) once for the whole run
    for task in tasks:  # a missing or mismatched language model stops the run before any data is read
        spec = settings.lm_for(task)
        if spec is not None and spec not in lms:
            lms[spec] = open_lm(spec)
        if spec is not None and lms[spec].lang != task.lang:
            raise UlmfitError(f"the language model {spec} is for '{lms[spec].lang}' but the task {task.id} is in "
                              f"'{task.lang}'; give --lm {task.lang}=MODEL for it.")
    previous = read_json(out / f"{RESULTS}.json")
    if previous is not None and previous.get("settings") != settings.to_dict():
        raise UlmfitError(f"{out} holds results of a bench run with other settings; choose another --out.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UlmfitError(f"cannot create the output folder {out} ({e.strerror}); choose another --out.") from e
    done = {row["task"]: row for row in (previous or {}).get("rows", [])}
    rows: list[dict] = []
    for i, task in enumerate(tasks, 1):
        log.info("task %d/%d: %s (%s)", i, len(tasks), task.id, task.name)
        row = done.get(task.id)
        if row is None or not (out / row["classifier"] / CONFIG).is_file():
            row = _run_task(task, settings, lms.get(settings.lm_for(task)), out, data_dir, device)
        if push_to is not None and not row.get("hub"):
            row["hub"] = _push(row, f"{push_to}/{hub_name(task, settings)}", out, token)
        rows.append(row)
        write_results(rows, settings, out)
    return rows


def hub_name(task: Task, settings: BenchSettings) -> str:
    """The Hub repository name of a task's classifier: `TASK-ulmfit` (en/trec6 → en-trec6-ulmfit), with
    `-scratch` without pretraining and `-N-labels` with a labels limit."""
    name = task.id.replace("/", "-") + "-ulmfit"
    name += "" if settings.pretrained else "-scratch"
    return name + (f"-{settings.labels_limit}-labels" if settings.labels_limit else "")


def _push(row: dict, repo_id: str, out: Path, token: str | None) -> str:
    from ulmfit.zoo.hub import push_model

    result = push_model(out / row["classifier"], repo_id, token=token, bench_results=[row], replace_card=True,
                        commit_message=f"ulmfit bench: {row['task']} ({row['metric']} {row['ensemble']})")
    log.info("%s: pushed to %s (commit %s)", row["task"], result["repo_url"], result["commit"][:12])
    return f"{repo_id}@{result['commit']}"


def _run_task(task: Task, settings: BenchSettings, lm: ModelDir | None, out: Path, data_dir: Path | str | None,
              device: str | None) -> dict:
    start = time.perf_counter()
    data = task.load(data_dir)
    if data.test is None or not len(data.test):
        raise UlmfitError(f"{task.id} has no test split to score; give the task a test file.")
    n_available = len(data.train)
    if settings.labels_limit is not None:
        data = limit_labels(data, settings.labels_limit, seed=settings.seed)
    rel = Path(CLASSIFIERS) / task.id.replace("/", "-")
    clf_dir = out / rel
    if clf_dir.exists():  # left by a run that stopped before its scores were written
        shutil.rmtree(clf_dir)
    finetune(lm, data, clf_dir, settings.config, directions=settings.directions,
             pretrained=settings.pretrained, device=device)
    classifier = Classifier.from_pretrained(clf_dir, device=device or "cpu")
    dataset = task.hf_dataset or task.id.split("/", 1)[-1]  # a Hub id, else the task's own name
    scores = classifier.evaluate(data.test, task.metric, record=True, dataset={
        "dataset_name": task.name, "dataset_type": dataset, "dataset_split": "test", "task_name": task.name})
    seconds = round(time.perf_counter() - start, 1)
    row = {
        "task": task.id, "task_name": task.name, "lang": task.lang, "lm": settings.lm_for(task), "pretrained": settings.pretrained,
        "n_train": len(data.train), "n_train_available": n_available, "n_test": len(data.test),
        "metric": task.metric, "dataset": dataset, "dataset_name": task.name, "split": "test",
        **{d: round(scores[d][task.metric], 4) if d in scores else None for d in ("fwd", "bwd", ENSEMBLE)},
        "published_ulmfit": task.published_ulmfit.value if task.published_ulmfit else None,
        "published_ulmfit_source": task.published_ulmfit.source if task.published_ulmfit else None,
        "published_best": task.published_best.value if task.published_best else None,
        "published_best_name": task.published_best.name if task.published_best else None,
        "published_best_source": task.published_best.source if task.published_best else None,
        "seconds": seconds, "dropped": data.dropped, "classifier": str(rel),
    }
    log.info("%s: %s fwd %s, bwd %s, ensemble %s (%.0f s)", task.id, task.metric, row["fwd"], row["bwd"],
             row[ENSEMBLE], seconds)
    return row


# --- tables --------------------------------------------------------------------------------------------------------

def write_results(rows: list[dict], settings: BenchSettings, out: Path) -> None:
    """`results.json` (settings and rows), `results.csv`, `results.md` and the learning-curve plot."""
    write_json(out / f"{RESULTS}.json", {"settings": settings.to_dict(), "rows": rows})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[c for c in rows[0] if c != "dropped"], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / f"{RESULTS}.csv", buf.getvalue())
    atomic_write_text(out / f"{RESULTS}.md", markdown_table(rows, settings) + "\n")
    plot_learning_curves(rows, out, out / PLOT)


def markdown_table(rows: list[dict], settings: BenchSettings | None = None) -> str:
    """The results as a Markdown table; scores in percent, published figures beside them."""
    head = ["task", "lang", "n train", "metric", "fwd", "bwd", "ensemble", "ULMFiT (published)", "best published",
            "time"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        best = f"{_pct(r['published_best'])} ({r['published_best_name']})" if r["published_best"] is not None else "–"
        lines.append("| " + " | ".join([
            r["task"], r["lang"], f"{r['n_train']:,}", r["metric"], _pct(r["fwd"]), _pct(r["bwd"]),
            _pct(r[ENSEMBLE]), _pct(r["published_ulmfit"]), best, _duration(r["seconds"])]) + " |")
    if settings is not None:
        how = "pretrained" if settings.pretrained else "no pretraining (random weights)"
        limit = f", {settings.labels_limit} labelled examples per task" if settings.labels_limit else ""
        lms = ", ".join(f"{lang}: {lm}" if lang != "*" else lm for lang, lm in settings.lms.items()) or "none"
        lines.append(f"\nLanguage models: {lms} ({how}{limit}).")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def plot_learning_curves(rows: list[dict], out: Path, path: Path) -> None:
    """One row of panels per task: the fine-tuned LM's valid perplexity, and the classifier's valid metric, by
    epoch across the stages (gradual unfreezing), one line per direction."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(len(rows), 2, figsize=(10, 3 * len(rows)), squeeze=False)
    for (ax_lm, ax_clas), row in zip(axes, rows):
        history = ModelDir.open(out / row["classifier"]).metrics()
        for direction, epochs in _curves(history).items():
            lm = [e for e in epochs if e["stage"].startswith("lm")]
            clas = [e for e in epochs if not e["stage"].startswith("lm")]
            ax_lm.plot(range(1, len(lm) + 1), [e.get("perplexity") for e in lm], marker="o", label=direction)
            ax_clas.plot(range(1, len(clas) + 1), [e.get(row["metric"]) for e in clas], marker="o", label=direction)
        ax_lm.set(title=f"{row['task']}: LM fine-tuning", xlabel="epoch", ylabel="valid perplexity")
        ax_clas.set(title=f"{row['task']}: classifier", xlabel="epoch (all unfreezing steps)",
                    ylabel=f"valid {row['metric']}")
        for ax in (ax_lm, ax_clas):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def _curves(metrics: dict) -> dict[str, list[dict]]:
    """The per-epoch rows of a classifier directory's `metrics.json`, grouped by direction, in training order."""
    by_direction: dict[str, list[dict]] = {}
    for r in metrics.get("history", []):
        by_direction.setdefault(r["direction"], []).append(r)
    return by_direction
