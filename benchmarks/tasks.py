"""The benchmark task registry: what each classification benchmark is, where its files are, how it is scored.

A `Task` names its files by their path under a data folder (the layout of the project's `../shared/data`). The
folder is the `data_dir` argument, else the environment variable `ULMFIT_DATA`, else `~/.cache/ulmfit/data`. When
the files are not there and the task exists on the Hugging Face Hub, `Task.load` reads it with
`datasets.load_dataset` instead. Sets that ship without a valid (or test) split get one carved with a fixed seed,
so every run of every user sees the same split. Users' own data becomes a task through `task_from_file` (a YAML
spec) or `task_from_csv`.

Published figures (`Baseline`) are on the metric's 0–1 scale and name their source; a task without a figure that
can be backed by one has None.
"""
from __future__ import annotations

import difflib
import logging
import os
import random
import re
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable

import yaml

from ulmfit.benchmarks import loaders
from ulmfit.benchmarks.data import ClassificationData, LabelledTexts, check_data
from ulmfit.errors import UlmfitError

log = logging.getLogger(__name__)

METRICS = ("accuracy", "macro_f1", "micro_f1")
SEED = 0  # the seed of every split this registry carves


@dataclass(frozen=True)
class Baseline:
    """A published score: `value` on the metric's 0–1 scale, `source` the paper or leaderboard it comes from."""

    name: str
    value: float
    source: str
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class Task:
    """One benchmark: its files, its Hub twin, its metric and the published figures to compare with.

    `loader` gets the task's `files` as paths (in the same order) and returns the splits as the files give them;
    `load` then runs `check_data` on them. `text_field` and `label_field` name the columns of the Hub dataset (and
    of a user's files); the local loaders know their own formats. `hf_splits` maps this task's split names to the
    Hub dataset's; a split it does not map is carved from train like the local loader does. `hf_label_names`
    renames Hub labels (ClassLabel names or raw values) to the names the local files use.
    """

    id: str
    lang: str
    name: str
    metric: str
    loader: Callable[[list[Path]], ClassificationData] = field(repr=False, compare=False)
    files: tuple[str, ...]
    multi_label: bool = False
    text_field: str = "text"
    label_field: str = "label"
    hf_dataset: str | None = None
    hf_config: str | None = None
    hf_splits: dict[str, str] = field(default_factory=dict, compare=False)
    hf_label_names: dict[str, str] = field(default_factory=dict, compare=False)
    description: str = ""
    source_url: str = ""
    published_ulmfit: Baseline | None = None
    published_best: Baseline | None = None

    def load(self, data_dir: str | Path | None = None) -> ClassificationData:
        """The task's splits, checked: from the files under `data_dir` when they are there, else from the Hub."""
        root = resolve_data_dir(data_dir)
        paths = [root / f for f in self.files]
        missing = [p for p in paths if not p.is_file()]
        if not missing:
            log.info("%s: reading %s", self.id, ", ".join(str(p) for p in paths) or self.description)
            return check_data(self.loader(paths))
        if self.hf_dataset:
            log.info("%s: %s is not there; loading %s from the Hugging Face Hub", self.id, missing[0],
                     self.hf_dataset)
            return check_data(load_from_hub(self))
        if not self.source_url:  # a user's task: its paths are absolute
            raise UlmfitError(f"{self.id} needs {missing[0]}, which does not exist: check the path.")
        raise UlmfitError(f"{self.id} needs {missing[0]}, which does not exist: download it from "
                          f"{self.source_url} and put it there (or point ULMFIT_DATA at a folder with that layout).")


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data folder: the argument, else $ULMFIT_DATA, else ~/.cache/ulmfit/data."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    return Path(os.environ.get("ULMFIT_DATA") or Path.home() / ".cache" / "ulmfit" / "data").expanduser()


def load_from_hub(task: Task) -> ClassificationData:
    """The task read with `datasets.load_dataset`, its columns and splits mapped onto the local loader's."""
    from datasets import load_dataset

    if task.multi_label:
        raise UlmfitError(f"{task.id} is multi-label, which the Hub path does not read: put its files in place.")
    try:
        hub = load_dataset(task.hf_dataset, task.hf_config)
    except Exception as e:  # offline, unknown repository, a script-based dataset: all end the same way
        raise UlmfitError(f"could not load {task.hf_dataset} from the Hugging Face Hub ({e}): put the files "
                          f"{', '.join(task.files)} under the data folder instead.") from None
    names: list[str] = []

    def split(ours: str) -> LabelledTexts | None:
        if ours not in task.hf_splits:
            return None
        part, classes = hf_labelled(hub[task.hf_splits[ours]], task.text_field, task.label_field, task.hf_label_names)
        if classes and not names:
            names.extend(classes)
        return part

    return loaders.with_splits(task.lang, names, split("train"), split("test"), SEED, valid=split("valid"))


def hf_labelled(part, text_field: str, label_field: str, rename: dict[str, str] | None = None,
                where: str = "the dataset") -> tuple[LabelledTexts, list[str] | None]:
    """The texts and string labels of one split of a `datasets` dataset, and its class names when the label column
    is a ClassLabel (whose -1 means no label: such rows are dropped later, and counted)."""
    rename = rename or {}
    missing = [c for c in (text_field, label_field) if c not in part.column_names]
    if missing:
        raise UlmfitError(f"{where} has no column {missing[0]!r} (it has: {', '.join(part.column_names)}); name the "
                          "columns with --text-col and --label-col.")
    classes = getattr(part.features[label_field], "names", None)
    raw = [(classes[v] if v is not None and v >= 0 else None) if classes else (None if v is None else str(v))
           for v in part[label_field]]
    labels = [rename.get(v, v) if v is not None else None for v in raw]
    return LabelledTexts(list(part[text_field]), labels), [rename.get(c, c) for c in classes] if classes else None


# ---------------------------------------------------------------------------------------------- the registry

_IMDB_ULMFIT = Baseline("ULMFiT", 0.954, "Howard & Ruder 2018, Universal Language Model Fine-tuning for Text "
                        "Classification, Table 2 (test error 4.6%)", "trained on all 25,000 training reviews")
_SENTEVAL = "https://github.com/facebookresearch/SentEval (data/downstream/get_transfer_data.bash)"
_SENTEVAL_SPLIT = "no split ships: test 10% / valid 10% / train the rest, seed 0"
_WISESIGHT = "https://github.com/PyThaiNLP/wisesight-sentiment"
_WISESIGHT_SOURCE = "PyThaiNLP/classification-benchmarks README, wisesight-sentiment table (Kaggle test accuracy)"
_WISESIGHT_ULMFIT = Baseline("ULMFiT (thai2fit)", 0.74194, _WISESIGHT_SOURCE,
                             "Kaggle private leaderboard; public 0.71259")
_WISESIGHT_BEST = Baseline("ULMFiT semi-supervised, repeated (thai2fit)", 0.75968, _WISESIGHT_SOURCE,
                           "Kaggle private leaderboard; public 0.73372")
_SOPHONPLUS = "https://github.com/SophonPlus/ChineseNlpCorpus"
_GERMEVAL = "https://germeval2021toxic.github.io/SharedTask/"
_GERMEVAL_FILES = ("de/germeval2021_toxic/train.csv.gz", "de/germeval2021_toxic/dev.csv.gz",
                   "de/germeval2021_toxic/test.csv.gz")
_TNEWS_CODES = {"100": "news_story", "101": "news_culture", "102": "news_entertainment", "103": "news_sports",
                "104": "news_finance", "106": "news_house", "107": "news_car", "108": "news_edu", "109": "news_tech",
                "110": "news_military", "112": "news_travel", "113": "news_world", "114": "news_stock",
                "115": "news_agriculture", "116": "news_game"}


def _senteval(key: str, name: str, files: tuple[str, str], labels: list[str], total: str, hf: str | None = None,
              label_field: str = "label") -> Task:
    return Task(
        id=f"en/{key}", lang="en", name=name, metric="accuracy", files=tuple(f"en/senteval/{f}" for f in files),
        loader=partial(loaders.line_files, labels=labels, seed=SEED, encoding="latin-1"),
        hf_dataset=hf, hf_splits={"train": "train", "test": "test"} if hf else {}, label_field=label_field,
        description=f"{name}, {' vs '.join(labels)}; {total}; {_SENTEVAL_SPLIT}."
                    + (" The Hub copy has a split of its own." if hf else ""),
        source_url=_SENTEVAL)


_TASKS = [
    Task(id="en/imdb", lang="en", name="IMDb movie reviews", metric="accuracy",
         files=("en/imdb/aclImdb_v1_labeled_only.tar.xz",), loader=partial(loaders.imdb_tar, seed=SEED),
         hf_dataset="stanfordnlp/imdb", hf_splits={"train": "train", "test": "test"},
         description="Maas et al. 2011, neg vs pos; train 22,500 / valid 2,500 (carved from the 25,000 training "
                     "reviews, seed 0) / test 25,000. The original aclImdb_v1.tar.gz works too (saved under this "
                     "name); its train/unsup reviews become unlabelled text for LM fine-tuning.",
         source_url="https://ai.stanford.edu/~amaas/data/sentiment/", published_ulmfit=_IMDB_ULMFIT,
         published_best=Baseline("RoBERTa-large with LlamBERT", 0.9668, "Csanády et al. 2024, LlamBERT: "
                                 "Large-scale low-cost data annotation in NLP (Papers with Code, IMDb leaderboard)")),
    Task(id="en/imdb-sample", lang="en", name="IMDb sample (1k)", metric="accuracy",
         files=("en/imdb/imdb_sample_1k_DERIVED.csv.gz",), loader=partial(loaders.imdb_sample, seed=SEED),
         description="for quick runs: the first 250 reviews by id of each split and label of aclImdb; train 450 / "
                     "valid 50 (carved, seed 0) / test 500. Scores are not comparable with published ones.",
         source_url="https://ai.stanford.edu/~amaas/data/sentiment/ (derived: first 250 files by id per "
                    "split and label)"),
    Task(id="en/trec6", lang="en", name="TREC question type (6 classes)", metric="accuracy",
         files=("en/trec/train_5500.label.gz", "en/trec/TREC_10.label.gz"),
         loader=partial(loaders.trec, seed=SEED, fine=False), hf_dataset="CogComp/trec",
         hf_splits={"train": "train", "test": "test"}, label_field="coarse_label",
         description="Li & Roth 2002, coarse labels ABBR DESC ENTY HUM LOC NUM; train 4,907 / valid 545 (carved "
                     "from the 5,452 training questions, seed 0) / test 500 (TREC 10). The train file is Latin-1.",
         source_url="https://cogcomp.seas.upenn.edu/Data/QA/QC/",
         published_ulmfit=Baseline("ULMFiT", 0.964, "Howard & Ruder 2018, Table 2 (test error 3.6%)",
                                   "trained on all 5,452 training questions")),
    Task(id="en/trec50", lang="en", name="TREC question type (50 fine classes)", metric="accuracy",
         files=("en/trec/train_5500.label.gz", "en/trec/TREC_10.label.gz"),
         loader=partial(loaders.trec, seed=SEED, fine=True), hf_dataset="CogComp/trec",
         hf_splits={"train": "train", "test": "test"}, label_field="fine_label",
         description="Li & Roth 2002, fine labels (COARSE:fine, 50 classes); train 4,907 / valid 545 (seed 0) / "
                     "test 500.",
         source_url="https://cogcomp.seas.upenn.edu/Data/QA/QC/"),
    _senteval("mr", "MR movie review snippets", ("MR/rt-polarity.neg.gz", "MR/rt-polarity.pos.gz"),
              ["neg", "pos"], "10,662 sentences: train 8,530 / valid 1,066 / test 1,066",
              hf="cornell-movie-review-data/rotten_tomatoes"),
    _senteval("cr", "CR customer reviews", ("CR/custrev.neg.gz", "CR/custrev.pos.gz"), ["neg", "pos"],
              "3,771 sentences (4 empty lines dropped): train 3,017 / valid 377 / test 377",
              hf="SetFit/SentEval-CR", label_field="label_text"),
    _senteval("subj", "SUBJ subjectivity", ("SUBJ/subj.objective.gz", "SUBJ/subj.subjective.gz"),
              ["objective", "subjective"], "10,000 sentences: train 8,000 / valid 1,000 / test 1,000",
              hf="SetFit/subj", label_field="label_text"),
    _senteval("mpqa", "MPQA opinion polarity", ("MPQA/mpqa.neg.gz", "MPQA/mpqa.pos.gz"), ["neg", "pos"],
              "10,603 phrases (3 empty lines dropped): train 8,483 / valid 1,060 / test 1,060"),
    Task(id="th/wisesight", lang="th", name="wisesight-sentiment", metric="accuracy",
         files=("th/wisesight_sentiment/huggingface_data.zip",),
         loader=partial(loaders.wisesight, seed=SEED, kaggle_test=False),
         hf_dataset="pythainlp/wisesight_sentiment", text_field="texts", label_field="category",
         hf_splits={"train": "train", "valid": "validation", "test": "test"},
         description="Thai social media, pos / neu / neg / q; train 21,628 / valid 2,404 / test 2,671 (the Hub's "
                     "split). The test is the Kaggle competition's test set less 3 rows whose text is '#ERROR!', so "
                     "the published Kaggle figures compare within ±0.11 points; th/wisesight-kaggle has the exact "
                     "set. Kaggle reported a public and a private part of it; the full set is neither.",
         source_url=_WISESIGHT, published_ulmfit=_WISESIGHT_ULMFIT, published_best=_WISESIGHT_BEST),
    Task(id="th/wisesight-kaggle", lang="th", name="wisesight-sentiment, Kaggle test set", metric="accuracy",
         files=("th/wisesight_sentiment/huggingface_data.zip",
                "th/wisesight_sentiment/kaggle-competition/test.txt.xz",
                "th/wisesight_sentiment/kaggle-competition/test_label.txt.xz"),
         loader=partial(loaders.wisesight, seed=SEED, kaggle_test=True),
         description="as th/wisesight, but the test split is the Kaggle competition's labelled test set as scored "
                     "(2,674 rows, 3 of them '#ERROR!' labelled neu); train 21,628 / valid 2,404. The competition "
                     "trained on 24,066 rows, about the train and valid splits together.",
         source_url=_WISESIGHT, published_ulmfit=_WISESIGHT_ULMFIT, published_best=_WISESIGHT_BEST),
    Task(id="zh/waimai", lang="zh", name="waimai_10k food-delivery reviews", metric="accuracy",
         files=("zh/sophonplus_chinesenlpcorpus/waimai_10k.csv.xz",),
         loader=partial(loaders.sophonplus, seed=SEED),
         description="SophonPlus ChineseNlpCorpus, neg vs pos; 11,987 reviews, no split ships: train 9,591 / "
                     "valid 1,198 / test 1,198 (seed 0).",
         source_url=_SOPHONPLUS),
    Task(id="zh/chnsenticorp", lang="zh", name="ChnSentiCorp hotel reviews", metric="accuracy",
         files=("zh/sophonplus_chinesenlpcorpus/ChnSentiCorp_htl_all.csv.xz",),
         loader=partial(loaders.sophonplus, seed=SEED),
         description="SophonPlus ChnSentiCorp_htl_all, neg vs pos; 7,765 reviews (1 empty dropped), no split "
                     "ships: train 6,213 / valid 776 / test 776 (seed 0).",
         source_url=_SOPHONPLUS),
    Task(id="zh/online-shopping", lang="zh", name="online_shopping_10_cats reviews", metric="accuracy",
         files=("zh/sophonplus_chinesenlpcorpus/online_shopping_10_cats.zip",),
         loader=partial(loaders.sophonplus, seed=SEED),
         description="SophonPlus, sentiment (neg vs pos) of reviews from 10 product categories; 62,773 reviews "
                     "(1 empty dropped), no split ships: train 50,219 / valid 6,277 / test 6,277 (seed 0).",
         source_url=_SOPHONPLUS),
    Task(id="zh/tnews", lang="zh", name="TNEWS news titles (CLUE)", metric="accuracy",
         files=("zh/tnews_clue/train.tsv.xz", "zh/tnews_clue/dev.tsv.xz", "zh/tnews_clue/labels.txt.xz"),
         loader=partial(loaders.tnews, seed=SEED), hf_dataset="clue/clue", hf_config="tnews",
         text_field="sentence", hf_splits={"train": "train", "test": "validation"}, hf_label_names=_TNEWS_CODES,
         description="CLUE TNEWS, 15 news categories; the public test set has no labels, so CLUE's dev set is the "
                     "test split: train 48,024 / valid 5,336 (carved from the 53,360 training titles, seed 0) / "
                     "test 10,000.",
         source_url="https://github.com/CLUEbenchmark/CLUE",
         published_best=Baseline("BERT-base (bert-base-chinese)", 0.5699, "zejunwang1/bertorch README, TNEWS "
                                 "dev accuracy", "on CLUE's dev set, this task's test split")),
    Task(id="de/germeval2021", lang="de", name="GermEval 2021 toxic comments", metric="macro_f1",
         files=_GERMEVAL_FILES, loader=partial(loaders.germeval2021, seed=SEED, multi_label=False),
         description="subtask 1, toxic vs not_toxic, scored by macro-F1 as in the shared task; train 2,920 / "
                     "valid 324 (the official training data split as in SuperGLEBer) / test 944 (official).",
         source_url=_GERMEVAL,
         published_best=Baseline("GBERT/GELECTRA ensemble (FHAC)", 0.718, "Bornheim et al. 2021, FHAC at "
                                 "GermEval 2021 (Papers with Code: GermEval 2021 Toxic Comments test set)",
                                 "official 944-comment test set")),
    Task(id="de/germeval2021-multi", lang="de", name="GermEval 2021 toxic, engaging, fact-claiming",
         metric="macro_f1", multi_label=True, files=_GERMEVAL_FILES,
         loader=partial(loaders.germeval2021, seed=SEED, multi_label=True),
         description="all three subtasks as one multi-label task (toxic, engaging, fact_claiming; a comment may "
                     "have none); train 2,920 / valid 324 / test 944.",
         source_url=_GERMEVAL),
]
REGISTRY: dict[str, Task] = {task.id: task for task in _TASKS}


def get_task(task_id: str) -> Task:
    """The registered task `task_id` (such as 'en/trec6'); an unknown id lists the known ones."""
    task_id = task_id.strip().lower()
    if task_id in REGISTRY:
        return REGISTRY[task_id]
    close = difflib.get_close_matches(task_id, list(REGISTRY), n=3, cutoff=0.75)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise UlmfitError(f"there is no task '{task_id}'{hint}; the known tasks are {', '.join(sorted(REGISTRY))}.")


def list_tasks(lang: str | None = None) -> list[Task]:
    """The registered tasks, by id; only those of language `lang` when it is given."""
    return [REGISTRY[i] for i in sorted(REGISTRY) if lang is None or REGISTRY[i].lang == lang]


# ---------------------------------------------------------------------------------------------- users' own tasks

SPEC_KEYS = ("id", "name", "lang", "train", "valid", "test", "text_col", "label_col", "metric", "multi_label",
             "label_sep", "encoding", "seed", "valid_frac", "test_frac", "description", "published_ulmfit",
             "published_best")


def task_from_file(path: str | Path) -> Task:
    """A task from a YAML spec; its file paths are relative to the spec's folder.

    Keys: `lang` and `train` (required); `valid`, `test` (carved from train when absent: `valid_frac`,
    `test_frac`, default 0.1, `seed` 0); `text_col` (text), `label_col` (label); `metric` (accuracy, macro_f1,
    micro_f1); `multi_label` with `label_sep` (default '|'); `encoding` (utf-8); `id`, `name`, `description`;
    `published_ulmfit` / `published_best` as {name, value, source, note}. Files are CSV, TSV or JSON lines,
    optionally compressed.
    """
    path = Path(path)
    try:
        spec = yaml.safe_load(loaders.read_text(path, fix="save the task spec as UTF-8"))
    except yaml.YAMLError as e:
        raise UlmfitError(f"{path} is not valid YAML ({e}): fix the spec.") from None
    if not isinstance(spec, dict):
        raise UlmfitError(f"{path} is not a mapping of keys to values: write it as `key: value` lines.")
    if unknown := [k for k in spec if k not in SPEC_KEYS]:
        hints = [f"{k} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(str(k), SPEC_KEYS, n=1)) else str(k)
                 for k in unknown]
        raise UlmfitError(f"{path} has unknown key(s) {', '.join(hints)}; the keys are {', '.join(SPEC_KEYS)}.")
    for key in ("lang", "train"):
        if not spec.get(key):
            raise UlmfitError(f"{path} has no `{key}`: a task spec needs at least `lang` and `train`.")
    folder = path.parent
    files = {role: folder / spec[role] for role in ("train", "valid", "test") if spec.get(role)}
    baselines = {key: _baseline(spec[key], f"{path}: {key}") for key in ("published_ulmfit", "published_best")
                 if spec.get(key) is not None}
    options = {k: spec[k] for k in ("text_col", "label_col", "metric", "multi_label", "label_sep", "encoding",
                                     "seed", "valid_frac", "test_frac", "description") if spec.get(k) is not None}
    try:
        return task_from_csv(files["train"], test=files.get("test"), valid=files.get("valid"),
                             lang=str(spec["lang"]), task_id=spec.get("id"), name=spec.get("name"), **options,
                             **baselines, encoding_hint=f"`encoding:` in {path}")
    except (TypeError, ValueError) as e:  # a number or a path of the wrong type
        raise UlmfitError(f"{path} has a value of the wrong type ({e}): check the spec's numbers and paths.") \
            from None


def task_from_csv(train: str | Path, test: str | Path | None = None, valid: str | Path | None = None, *,
                  lang: str, text_col: str = "text", label_col: str = "label", metric: str = "accuracy",
                  multi_label: bool = False, label_sep: str = "|", encoding: str = "utf-8", seed: int = 0,
                  valid_frac: float = 0.1, test_frac: float = 0.1, task_id: str | None = None,
                  name: str | None = None, description: str | None = None,
                  published_ulmfit: Baseline | None = None, published_best: Baseline | None = None,
                  encoding_hint: str = "--encoding") -> Task:
    """A task from CSV, TSV or JSONL files; missing valid/test splits are carved from train with `seed`.

    `encoding_hint` is how the user names the files' encoding, for the error a file in another encoding gets
    (`--encoding` on the command line; a spec file says `encoding:`)."""
    from ulmfit.langs import get_lang

    lang = get_lang(lang).code
    loaders.python_encoding(encoding)  # an unknown encoding is refused now, not when the files are read
    if metric not in METRICS:
        raise UlmfitError(f"'{metric}' is not a metric this package scores: use one of {', '.join(METRICS)}.")
    for label, fraction in (("valid_frac", valid_frac), ("test_frac", test_frac)):
        if not 0 < float(fraction) < 0.5:
            raise UlmfitError(f"{label} is {fraction}: give a fraction of the training rows between 0 and 0.5.")
    roles = {role: Path(p).expanduser().resolve() for role, p in (("train", train), ("valid", valid),
                                                                   ("test", test)) if p is not None}
    for role, p in roles.items():
        if p.is_dir():
            raise UlmfitError(f"the {role} file {p} is a directory: give a CSV, TSV or JSON-lines file in it.")
        if not p.is_file():
            raise UlmfitError(f"the {role} file {p} does not exist: check the path.")
        loaders.table_format(p)
    name = str(name or default_task_name(roles["train"]))
    task_id = str(task_id or f"{lang}/{slug(name)}")
    carved = [f"{role} {frac:.0%} of train" for role, frac in (("test", test_frac), ("valid", valid_frac))
              if role not in roles]
    return Task(
        id=task_id, lang=lang, name=name, metric=metric, multi_label=bool(multi_label),
        files=tuple(str(p) for p in roles.values()), text_field=text_col, label_field=label_col,
        loader=partial(_read_user_files, roles=tuple(roles), lang=lang, text_col=text_col, label_col=label_col,
                       encoding=encoding, label_sep=label_sep if multi_label else None, seed=int(seed),
                       valid_frac=float(valid_frac), test_frac=float(test_frac),
                       fix=loaders.name_the_encoding(encoding_hint)),
        description=description or f"from {', '.join(f'{r} {p.name}' for r, p in roles.items())}"
                                   + (f"; carved with seed {seed}: {', '.join(carved)}" if carved else ""),
        published_ulmfit=published_ulmfit, published_best=published_best)


_SPLIT_WORD = re.compile(r"(^|[-_.])(train|training|trn|data|dataset|all|full)$", re.IGNORECASE)


def default_task_name(train: Path) -> str:
    """A task's name from its training file, without the split: `reviews-train.csv` → reviews; a file named only
    by its split (`train.csv`, `data.jsonl`) → its folder's name."""
    stem = _SPLIT_WORD.sub("", train.name.split(".")[0])
    return stem or train.resolve().parent.name or "task"


def slug(name: str) -> str:
    """A name as a task id part and folder name: lower case, letters, digits, '.', '_' and '-'."""
    return re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._") or "task"


def task_from_hf(dataset: str, *, lang: str, text_col: str = "text", label_col: str = "label",
                 train_split: str = "train", test_split: str | None = None, valid_split: str | None = None,
                 name: str | None = None, task_id: str | None = None, metric: str = "accuracy") -> Task:
    """A task from a Hugging Face dataset: `NAME[:CONFIG]` on the Hub (read by `datasets.load_dataset`, with its cache,
    HF_HOME and HF_HUB_OFFLINE), or a local folder that `datasets` wrote (`save_to_disk`) or that holds its data
    files (parquet, CSV or JSON lines, split by their names).

    `train_split` names the training split; the test and valid splits are `test_split` and `valid_split`, by default
    `test` and `validation` (or `valid`, `dev`) where the dataset has them, else carved from train with seed 0.
    Single-label only: a ClassLabel column gives the label names, other columns their values as strings.
    """
    from ulmfit.langs import get_lang

    lang = get_lang(lang).code
    if metric not in METRICS:
        raise UlmfitError(f"'{metric}' is not a metric this package scores: use one of {', '.join(METRICS)}.")
    local = Path(dataset).expanduser()
    if local.exists():
        hub_id, config, source = None, None, str(local.resolve())
    else:
        hub_id, _, config = dataset.partition(":")
        if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", hub_id):
            raise UlmfitError(f"{dataset!r} is neither a folder nor a Hub dataset: give NAME, ORG/NAME or "
                              "ORG/NAME:CONFIG, or the folder of a dataset `datasets` saved.")
        source = hub_id
    name = str(name or hub_id or local.name)
    return Task(
        id=str(task_id or f"{lang}/{slug(name.split('/')[-1])}"), lang=lang, name=name, metric=metric, files=(),
        text_field=text_col, label_field=label_col, hf_dataset=hub_id, hf_config=config or None,
        loader=partial(_read_hf_task, source=source, config=config or None, lang=lang, text_col=text_col,
                       label_col=label_col, splits=(train_split, test_split, valid_split)),
        description=f"the Hugging Face dataset {dataset}" + (f" (config {config})" if config else ""))


def open_hf_dataset(source: str, config: str | None = None):
    """A `datasets.DatasetDict` from a Hub dataset id (and config) or a local folder (see `task_from_hf`)."""
    from datasets import DatasetDict, load_dataset, load_from_disk

    path = Path(source)
    try:
        if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
            data = load_from_disk(str(path))
        elif path.is_dir():
            builder, files = _data_files(path)
            data = load_dataset(builder, data_files=files)
        else:
            data = load_dataset(source, config)
    except Exception as e:  # offline, unknown dataset or config, unreadable files: all end the same way
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UlmfitError(f"could not load the dataset {source}{f':{config}' if config else ''} ({first}); check its "
                          "name and config (NAME:CONFIG) and the network (HF_HUB_OFFLINE=1 reads only the cache), "
                          "or give a folder that `datasets` saved.") from None
    return data if isinstance(data, DatasetDict) else DatasetDict({"train": data})


_BUILDERS = {".parquet": "parquet", ".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}


def _data_files(folder: Path) -> tuple[str, dict[str, list[str]]]:
    """The `datasets` builder and the files of each split in a folder of data files: a split is named by the
    file name up to its first '-' or '.' (`train.parquet`, `test-00000-of-00002.parquet`)."""
    found = sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix in _BUILDERS)
    kinds = {_BUILDERS[f.suffix] for f in found}
    if len(kinds) != 1:
        raise UlmfitError(f"{folder} holds {'no' if not kinds else 'mixed'} data files (parquet, CSV or JSON lines); "
                          "give a folder of one kind, or one that `datasets` saved with save_to_disk.")
    splits: dict[str, list[str]] = {}
    for f in found:
        splits.setdefault(re.split(r"[-.]", f.name, maxsplit=1)[0], []).append(str(f))
    return kinds.pop(), splits


def _read_hf_task(paths: list[Path], *, source: str, config: str | None, lang: str, text_col: str, label_col: str,
                  splits: tuple[str, str | None, str | None]) -> ClassificationData:
    data = open_hf_dataset(source, config)
    have = list(data)

    def pick(asked: str | None, defaults: tuple[str, ...], flag: str) -> str | None:
        if asked is not None and asked not in have:
            raise UlmfitError(f"{source} has no split {asked!r} (it has: {', '.join(have)}); name one with {flag}.")
        return asked or next((d for d in defaults if d in have), None)

    train_split, test_split, valid_split = splits
    train = pick(train_split, (), "--train-split")
    test = pick(test_split, ("test",), "--test-split")
    valid = pick(valid_split, ("validation", "valid", "dev"), "--valid-split")
    if train in (test, valid):
        raise UlmfitError(f"the split {train!r} cannot be the training split and a held-out one; name others.")
    names: list[str] = []

    def part(split: str | None) -> LabelledTexts | None:
        if split is None:
            return None
        texts, classes = hf_labelled(data[split], text_col, label_col, where=f"{source} (split {split})")
        if classes and not names:
            names.extend(classes)
        return texts

    return loaders.with_splits(lang, names, part(train), part(test), SEED, valid=part(valid))


def user_task(*, lang: str, train: str | Path | None = None, test: str | Path | None = None,
              valid: str | Path | None = None, hf_dataset: str | None = None, train_split: str = "train",
              test_split: str | None = None, valid_split: str | None = None, text_col: str = "text",
              label_col: str = "label", name: str | None = None, multi_label: bool = False,
              label_sep: str = "|", encoding: str = "utf-8") -> Task:
    """A user's task, from files (`task_from_csv`, in `encoding`) or from a Hugging Face dataset (`task_from_hf`):
    what `ulmfit finetune` and `ulmfit bench` build from `--train ...` or `--hf-dataset ...`."""
    if (train is None) == (hf_dataset is None):
        raise UlmfitError("give the task's data as --train FILE (with --test/--valid) or as --hf-dataset NAME "
                          "(one of them).")
    if hf_dataset is not None:
        if test is not None or valid is not None:
            raise UlmfitError("--test and --valid name files, which go with --train; with --hf-dataset name the "
                              "dataset's splits with --test-split and --valid-split.")
        if multi_label:
            raise UlmfitError("--multi-label reads files; save the dataset as JSON lines with a list of labels per "
                              "row and give it with --train.")
        return task_from_hf(hf_dataset, lang=lang, text_col=text_col, label_col=label_col, train_split=train_split,
                            test_split=test_split, valid_split=valid_split, name=name)
    if (train_split, test_split, valid_split) != ("train", None, None):
        raise UlmfitError("--train-split, --test-split and --valid-split name a dataset's splits: they go with "
                          "--hf-dataset, not --train.")
    return task_from_csv(train, test=test, valid=valid, lang=lang, text_col=text_col, label_col=label_col,
                         multi_label=multi_label, label_sep=label_sep, name=name, encoding=encoding)


def _read_user_files(paths: list[Path], *, roles: tuple[str, ...], lang: str, text_col: str, label_col: str,
                     encoding: str, label_sep: str | None, seed: int, valid_frac: float,
                     test_frac: float, fix: str) -> ClassificationData:
    splits = {role: loaders.read_table(p, text_col, label_col, encoding, label_sep, fix)
              for role, p in zip(roles, paths)}
    return loaders.with_splits(lang, [], splits["train"], splits.get("test"), seed, valid_frac, test_frac,
                               multi_label=label_sep is not None, valid=splits.get("valid"))


def _baseline(value, where: str) -> Baseline:
    if not isinstance(value, dict) or not {"name", "value", "source"} <= set(value) <= {"name", "value", "source",
                                                                                         "note"}:
        raise UlmfitError(f"{where} must have `name`, `value` and `source` (and optionally `note`).")
    score = float(value["value"])
    if not 0 <= score <= 1:
        raise UlmfitError(f"{where} has value {score}: give it on the 0–1 scale (95.4% is 0.954).")
    return Baseline(str(value["name"]), score, str(value["source"]), str(value.get("note", "")))


# ---------------------------------------------------------------------------------------------- few labels

def limit_labels(data: ClassificationData, n: int, seed: int = 0) -> ClassificationData:
    """`data` with a stratified sample of `n` training examples (ULMFiT's few-label experiments).

    Every class keeps at least one example when `n` allows; the rest are shared out in proportion to the class
    sizes (largest remainders). For a multi-label task each label is first covered by one example, then the rest
    are drawn at random. The training texts left out join `unlabelled`, so language-model fine-tuning still reads
    them, as in the paper's semi-supervised runs. The same seed gives the same sample.
    """
    if n < 1:
        raise UlmfitError(f"a labels limit of {n} leaves nothing to train on: give a positive number.")
    train = data.train
    if n >= len(train):
        return data
    rng = random.Random(seed)
    order = list(range(len(train)))
    rng.shuffle(order)
    chosen, uncovered = _cover_labels(train, order, data.multi_label, n)
    if uncovered:
        log.warning("a labels limit of %d leaves %d class(es) without a training example", n, uncovered)
    if data.multi_label:
        taken = set(chosen)
        chosen += [i for i in order if i not in taken][:n - len(chosen)]
    else:
        chosen += _proportional_fill(train, order, set(chosen), n - len(chosen))
    keep = set(chosen)
    picked = sorted(keep)
    rest = [train.texts[i] for i in range(len(train)) if i not in keep]
    return replace(data, train=LabelledTexts([train.texts[i] for i in picked], [train.labels[i] for i in picked]),
                   unlabelled=list(data.unlabelled) + rest)


def _cover_labels(train: LabelledTexts, order: list[int], multi_label: bool, n: int) -> tuple[list[int], int]:
    """One example per label, rarest labels first, walking the shuffled `order`; at most `n`.

    Returns the chosen indices and the number of labels left without an example.
    """
    counts: dict[str, int] = {}
    for labs in train.labels:
        for lab in (labs if multi_label else [labs]):
            counts[lab] = counts.get(lab, 0) + 1
    covered: set[str] = set()
    chosen: list[int] = []
    for label in sorted(counts, key=lambda lab: (counts[lab], lab)):
        if len(chosen) == n:
            break
        if label in covered:
            continue
        i = next(i for i in order if label in (train.labels[i] if multi_label else [train.labels[i]]))
        chosen.append(i)
        covered.update(train.labels[i] if multi_label else [train.labels[i]])
    return chosen, len(counts) - len(covered)


def _proportional_fill(train: LabelledTexts, order: list[int], taken: set[int], k: int) -> list[int]:
    """`k` more examples, shared among the classes in proportion to their remaining sizes (largest remainder)."""
    pools: dict[str, list[int]] = {}
    for i in order:
        if i not in taken:
            pools.setdefault(train.labels[i], []).append(i)
    total = sum(len(p) for p in pools.values())
    if k <= 0 or not total:
        return []
    shares = {lab: k * len(p) / total for lab, p in pools.items()}
    quota = {lab: int(s) for lab, s in shares.items()}
    for lab in sorted(shares, key=lambda lab: (quota[lab] - shares[lab], lab))[:k - sum(quota.values())]:
        quota[lab] += 1
    return [i for lab, pool in pools.items() for i in pool[:quota[lab]]]
