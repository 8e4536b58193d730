"""The model card (`README.md`) of a model or classifier directory (written by `ulmfit pretrain`, `convert` and
`finetune`; rewritten by `push`), built on huggingface_hub's `ModelCardData`/`EvalResult` so that its metadata is
what the Hub parses: language, license, `library_name: ulmfit`, tags, datasets, and a `model-index` with the
valid-split perplexity of each direction, the classifier's evaluation results, and downstream results from a
benchmark results file.

A benchmark results file (`--bench-results results.json`, as `ulmfit bench` writes it) holds `{"rows": [...]}` (or
is a plain JSON list of rows), one per task and metric:

    {"task": "th/wisesight", "metric": "accuracy", "fwd": 0.71, "bwd": 0.70, "ensemble": 0.73,
     "dataset": "pythainlp/wisesight_sentiment", "dataset_name": "Wisesight Sentiment", "split": "test"}

`task` (or `task_id`) and `metric` are required, and at least one of `fwd`, `bwd`, `ensemble` must be a number;
`dataset` (a Hub dataset id, default: the task), `dataset_name`, `task_name` and `split` (default `test`) are
optional and other keys are ignored. Rows that cannot be used are skipped with a warning that counts them.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ulmfit import __version__
from ulmfit.errors import UlmfitError
from ulmfit.langs import get_lang
from ulmfit.langs.base import HF_WIKIPEDIA
from ulmfit.pretrain.modeldir import CLASSIFIER_FORMAT
from ulmfit.spec import HUB, ModelSpec

log = logging.getLogger(__name__)

WIKIPEDIA_LICENSE = "cc-by-sa-4.0"
VARIANTS = {"fwd": "forward", "bwd": "backward", "ensemble": "ensemble"}
HEADINGS = {"valid_ppl": "valid perplexity", "accuracy": "valid accuracy", "valid_loss": "valid loss",
            "train_loss": "train loss", "epoch": "epochs"}
TEMPLATES = Path(__file__).with_name("cards")  # the prose, as Jinja templates rendered by ModelCard.from_template


def is_wikipedia(corpus: dict) -> bool:
    source = corpus.get("source") or {}
    return source.get("type") == "wikipedia-dump" or "wikipedia" in str(source.get("dataset", "")).lower()


def license_of(config: dict) -> str:
    """The config's licence; Wikipedia-trained weights are shared under Wikipedia's CC BY-SA 4.0."""
    if config.get("license"):
        return config["license"]
    return WIKIPEDIA_LICENSE if is_wikipedia(config.get("corpus") or {}) else "unknown"


def _corpus_dataset(corpus: dict) -> tuple[str | None, str, str | None]:
    """(Hub dataset id, a readable name, dataset config) of the pretraining corpus."""
    source = corpus.get("source") or {}
    if source.get("type") == "wikipedia-dump":
        name = " ".join(str(x) for x in (source.get("dbname"), source.get("dump_date")) if x)
        return HF_WIKIPEDIA, f"Wikipedia ({name or 'dump'})", None
    if source.get("type") == "hf-dataset" and source.get("dataset"):
        return source["dataset"], source["dataset"], source.get("config")
    return None, "text corpus", None


def read_bench_results(source: Path | str | list[dict]) -> list[dict]:
    """The usable rows of a benchmark results file, or of a list of rows (format in the module docstring)."""
    if isinstance(source, list):
        return _usable_rows(source, "the benchmark rows")
    try:
        data = json.loads(Path(source).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UlmfitError(f"cannot read the benchmark results {source} ({e}); give the results.json of `ulmfit bench`.")
    rows = data.get("rows") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise UlmfitError(f"{source} holds no list of results; give a JSON list of rows such as "
                          '{"task": ..., "metric": ..., "fwd": ..., "bwd": ..., "ensemble": ...}.')
    return _usable_rows(rows, str(source))


def _usable_rows(rows: list, where: str) -> list[dict]:
    usable = []
    for row in rows:
        if not isinstance(row, dict) or not (row.get("task") or row.get("task_id")) or not row.get("metric"):
            continue
        values = {k: row[k] for k in VARIANTS if isinstance(row.get(k), (int, float)) and not isinstance(row[k], bool)}
        if values:
            usable.append(row | {"task": row.get("task") or row["task_id"], "values": values})
    if len(usable) < len(rows):
        log.warning("%d of %d rows in %s lack a task, a metric or a number and are left out of the card",
                    len(rows) - len(usable), len(rows), where)
    return usable


def merge_bench_results(card_text: str, rows: list[dict], name: str) -> str:
    """An existing model card (its text as on the Hub) with the benchmark rows added to its metadata's
    model-index: results of the same dataset, split and metric replace the old ones; its prose is kept."""
    card = ModelCard(card_text)
    new = _bench_eval_results(rows)

    def key(r: EvalResult) -> tuple:
        return r.task_type, r.dataset_type, r.dataset_split, r.metric_type, r.metric_name

    keys = {key(r) for r in new}
    card.data.eval_results = [r for r in card.data.eval_results or [] if key(r) not in keys] + new
    card.data.model_name = card.data.model_name or name
    datasets = list(card.data.datasets or []) + [r.dataset_type for r in new if "/" in r.dataset_type]
    card.data.datasets = list(dict.fromkeys(datasets)) or None
    card.data.metrics = sorted(set(card.data.metrics or []) | {r.metric_type for r in new}) or None
    return str(card)


def _bench_eval_results(rows: list[dict]) -> list[EvalResult]:
    return [EvalResult(task_type="text-classification", task_name=row.get("task_name") or row["task"],
                       dataset_type=row.get("dataset") or row["task"],
                       dataset_name=row.get("dataset_name") or row["task"],
                       dataset_split=row.get("split") or "test", metric_type=row["metric"],
                       metric_name=f"{row['metric']} ({VARIANTS[variant]})", metric_value=round(float(value), 4))
            for row in rows for variant, value in row["values"].items()]


def _bench_table(rows: list[dict]) -> str:
    """The rows as a table, with the published figures they are compared with where the rows give them."""
    if not rows:
        return ""
    published = [k for k in ("published_ulmfit", "published_best") if any(_number(r.get(k)) for r in rows)]
    head = ["task", "metric", "forward", "backward", "ensemble"]
    head += [{"published_ulmfit": "ULMFiT (published)", "published_best": "best published"}[k] for k in published]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [f"{row['values'][v]:.4f}" if v in row["values"] else "-" for v in VARIANTS]
        for key in published:
            value = row.get(key)
            name = row.get("published_best_name") if key == "published_best" else None
            cells.append(f"{value:.4f}" + (f" ({name})" if name else "") if _number(value) else "-")
        lines.append(f"| {row['task']} | {row['metric']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _lm_eval_results(config: dict) -> list[EvalResult]:
    corpus = config.get("corpus") or {}
    dataset, dataset_name, dataset_config = _corpus_dataset(corpus)
    # A converted model's figures are its publisher's (the converter measures none): the results say so.
    origin = config.get("converted_from") or {}
    source = {"source_name": f"published with {origin.get('title') or origin.get('format')}",
              "source_url": origin.get("homepage")} if origin else {}
    results = []
    for direction, m in (config.get("metrics") or {}).items():
        if direction not in ("fwd", "bwd"):
            continue
        for metric, keys, digits in (("perplexity", ("valid_ppl", "perplexity"), 2), ("accuracy", ("accuracy",), 4)):
            value = next((m[k] for k in keys if m.get(k) is not None), None)
            if value is not None:
                results.append(EvalResult(
                    task_type="text-generation", task_name="Language modelling", dataset_type=dataset or "text",
                    dataset_name=dataset_name, dataset_config=dataset_config, dataset_split="validation",
                    metric_type=metric, metric_name=f"{metric.capitalize()} ({VARIANTS[direction]})",
                    metric_value=round(float(value), digits), **source))
    return results


def _classifier_eval_results(config: dict) -> list[EvalResult]:
    results = []
    for r in config.get("eval_results") or []:
        try:
            results.append(EvalResult(
                task_type=r.get("task_id") or "text-classification", task_name=r.get("task_name"),
                dataset_type=r["dataset_type"], dataset_name=r.get("dataset_name") or r["dataset_type"],
                dataset_split=r.get("dataset_split"), metric_type=r["metric_type"],
                metric_name=r.get("metric_name"), metric_value=r["metric_value"]))
        except (KeyError, TypeError):
            log.warning("an eval result without dataset_type, metric_type or metric_value is left out: %s", r)
    return results


def _base_model(config: dict) -> str | None:
    """The Hub repository of the language model a classifier started from, where it came from the Hub."""
    lm = config.get("lm") or {}
    if lm.get("repo_id"):
        return lm["repo_id"]
    try:
        spec = ModelSpec.parse(lm.get("spec") or "")
    except UlmfitError:
        return None
    return spec.name if spec.kind == HUB else None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "/".join(_fmt(v) for v in value)
    return str(value)


def _tokenizer_lines(config: dict, lang) -> str:
    tok = config.get("tokenizer") or {}
    if tok.get("type") == "sentencepiece":
        what = f"SentencePiece unigram model (`{tok.get('file', 'spm.model')}`), {config['vocab_size']:,} pieces"
    else:
        what = (f"word level: {lang.word_tokenizer or 'whitespace'} segmentation plus fastai's rules, "
                f"{config['vocab_size']:,} words (`{tok.get('file', 'vocab.json')}`)")
    rules = ", ".join(f"`{r}`" for r in tok.get("rules") or []) or "none"
    return f"- {what}\n- text rules: {rules}\n- fastai's special tokens first (`xxunk` … `xxmaj`, ids 0–8)"


def _corpus_lines(config: dict) -> str:
    corpus = config.get("corpus") or {}
    source = corpus.get("source") or {}
    if source.get("type") == "wikipedia-dump":
        what = f"the Wikipedia dump `{source.get('dbname') or '?'}`" + (
            f" of {source['dump_date']}" if source.get("dump_date") else "")
    elif source.get("type") == "hf-dataset":
        what = f"the Hub dataset `{source.get('dataset') or source.get('path')}`" + (
            f" (config `{source['config']}`)" if source.get("config") else "")
    else:
        what = {"text": "plain text", None: "unknown"}.get(source.get("type"), f"`{source.get('type')}`")
    lines = [f"- source: {what}"]
    if config.get("converted_from"):
        origin = config["converted_from"]
        lines.append(f"- converted from {origin.get('title') or 'the `' + origin.get('format', '?') + '` release'}"
                     + (f" ({origin['homepage']})" if origin.get("homepage") else "") + ": see its publisher's notes; "
                     "the weights are the publisher's, with the vocabulary's rows reordered so that ids 0-8 are "
                     "fastai's special tokens")
        lines += [f"- source file `{name}`, sha256 `{digest}`" for name, digest in origin.get("files", {}).items()]
        lines += [f"- downloaded from {url}" for url in origin.get("urls", {}).values()]
    articles, tokens = corpus.get("articles") or {}, corpus.get("tokens") or {}
    if articles or tokens:
        lines.append(f"- articles: {articles.get('train', 0):,} train / {articles.get('valid', 0):,} valid; "
                     f"tokens: {tokens.get('train', 0):,} train / {tokens.get('valid', 0):,} valid")
    return "\n".join(lines)


def _training_table(config: dict) -> str:
    arch, train = config.get("arch") or {}, config.get("train") or {}
    rows = [("architecture", f"AWD-LSTM, embedding {arch.get('emb_sz')}, hidden {arch.get('n_hid')}, "
                             f"{arch.get('n_layers')} layers, tied weights: {arch.get('tie_weights', True)}"),
            ("dropouts (× drop_mult {})".format(_fmt(config.get("drop_mult", 1.0))),
             ", ".join(f"{k} {_fmt(arch[k])}" for k in ("output_p", "hidden_p", "input_p", "embed_p", "weight_p")
                       if k in arch))]
    rows += [(key, _fmt(train[key])) for key in ("epochs", "bs", "bptt", "lr", "moms", "wd", "clip", "alpha", "beta")
             if key in train]
    return "| setting | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def _metrics_table(metrics: dict) -> str:
    """A table of the numeric figures per direction (or ensemble) in a config's `metrics`."""
    rows = {name: {k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            for name, m in metrics.items() if isinstance(m, dict)}
    keys = [k for k in ("valid_ppl", "accuracy", "valid_loss", "epoch") if any(k in r for r in rows.values())]
    keys += sorted({k for r in rows.values() for k in r} - set(keys) - {"tokens_per_s", "train_seconds", "peak_mem_mb"})
    if not rows or not keys:
        return "No figures were recorded."
    lines = ["| | " + " | ".join(HEADINGS.get(k, k) for k in keys) + " |", "|---|" + "---|" * len(keys)]
    for name, r in rows.items():
        cells = [("-" if k not in r else str(r[k] + 1) if k == "epoch" else f"{r[k]:.4g}") for k in keys]
        lines.append(f"| {VARIANTS.get(name, name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_card(config: dict, name: str, repo_id: str | None = None, bench: list[dict] | None = None) -> ModelCard:
    """The card of a model (or classifier) directory's config; `bench` holds rows from `read_bench_results`."""
    bench = bench or []
    lang = get_lang(config["lang"])
    classifier = config.get("format") == CLASSIFIER_FORMAT
    eval_results = (_classifier_eval_results(config) if classifier else _lm_eval_results(config))
    # a classifier's recorded scores already hold its benchmark's ensemble figures: each result once
    recorded = {(r.dataset_type, r.dataset_split, r.metric_type) for r in eval_results}
    eval_results += [r for r in _bench_eval_results(bench) if not (
        r.metric_name.endswith(f"({VARIANTS['ensemble']})") and (r.dataset_type, r.dataset_split, r.metric_type)
        in recorded)]
    dataset, _, _ = _corpus_dataset(config.get("corpus") or {})
    datasets = [dataset] if dataset else []
    datasets += [r.dataset_type for r in eval_results if "/" in r.dataset_type]
    tags = ["ulmfit", "awd-lstm", "fastai", lang.code, "text-classification" if classifier else "language-model"]
    data = ModelCardData(
        language=[lang.code], license=license_of(config), library_name="ulmfit", tags=tags,
        datasets=list(dict.fromkeys(datasets)) or None, metrics=sorted({r.metric_type for r in eval_results}) or None,
        pipeline_tag="text-classification" if classifier else "text-generation",
        base_model=_base_model(config) if classifier else None,
        model_name=name, eval_results=eval_results or None)
    common = {"lang_name": lang.name, "lang_code": lang.code, "version": config.get("ulmfit_version", __version__),
              "spec": repo_id or "PATH_TO_MODEL_DIR",
              "tokenizer_lines": _tokenizer_lines(config, lang), "citation": _template_text("citation.md")}
    if classifier:
        fields, template = _classifier_fields(config, bench), "classifier.md"
    else:
        fields, template = _lm_fields(config, bench, name), "language_model.md"
    return ModelCard.from_template(data, template_path=str(TEMPLATES / template), **common, **fields)


# --- plain fastai --------------------------------------------------------------------------------------------------

# This package's rule names whose fastai.text.core function has another name (or is fastai's ASCII version).
FASTAI_RULE_NAMES = {"fastai_replace_all_caps": "replace_all_caps", "fastai_replace_maj": "replace_maj"}
_FASTAI_LM_DROPOUTS = {"output_p": 0.1, "hidden_p": 0.15, "input_p": 0.25, "embed_p": 0.02, "weight_p": 0.2}
_SEGMENTERS = {  # the word segmenters `ulmfit.langs.tokenizers` uses, as plain code
    "pythainlp": ("from pythainlp.tokenize import word_tokenize", 'word_tokenize(t, engine="newmm", '
                                                                  "keep_whitespace=True)"),
    "jieba": ("import jieba", "jieba.lcut(t)"),
}


def fastai_usage(config: dict, name: str, folder: str = "fastai-lm") -> dict[str, Any]:
    """What the plain-fastai code of a language model needs (`ulmfit export-fastai` wrote `folder`, with
    `models/NAME.pth` and `NAME.pkl`): the tokenizer code, the rules as fastai.text.core names, the AWD_LSTM
    configs."""
    tok = config.get("tokenizer") or {}
    lang = get_lang(config["lang"])
    ours = list(tok.get("rules") or [])
    rules = [FASTAI_RULE_NAMES.get(r, r) for r in ours]
    if tok.get("type") == "sentencepiece":
        segmenter = "sentencepiece"
        code = f'tok = SentencePieceTokenizer(lang="{lang.code}", sp_model="{folder}/spm.model")'
    elif lang.word_tokenizer == "spacy" and not lang.spacy_config:
        segmenter, code = "spacy", f'tok = SpacyTokenizer(lang="{lang.code}")'
    elif lang.word_tokenizer == "spacy":
        segmenter = "spacy"
        code = (f"import spacy\n\n\nclass WordTokenizer:  # spaCy's {lang.name} rules, as the model was trained\n"
                f"    def __init__(self):\n"
                f"        self.nlp = spacy.blank({lang.code!r}, config={lang.spacy_config!r})\n"
                f"        for t in defaults.text_spec_tok:\n"
                f"            self.nlp.tokenizer.add_special_case(t, [{{\"ORTH\": t}}])\n\n"
                f"    def __call__(self, items):\n"
                f"        return ([w.text for w in doc] for doc in self.nlp.pipe(map(str, items)))\n\n\n"
                f"tok = WordTokenizer()")
    else:
        segmenter = lang.word_tokenizer
        imports, call = _SEGMENTERS[segmenter]
        code = (f"{imports}\n\n\nclass WordTokenizer:  # {segmenter}, as the model was trained\n"
                f"    def __call__(self, items):\n        return ({call} for t in items)\n\n\ntok = WordTokenizer()")
    arch = config["arch"]
    sizes = ", ".join(f"{k}={arch[k]!r}" for k in ("emb_sz", "n_hid", "n_layers"))
    dropouts = "".join(f", {k}={arch[k]!r}" for k, v in _FASTAI_LM_DROPOUTS.items() if arch.get(k, v) != v)
    notes = []
    if {"replace_maj", "replace_all_caps"} & set(ours):
        notes.append("fastai's `replace_maj` and `replace_all_caps` mark capitals A-Z only, the model's (ulmfit's) "
                     "those of every script: text outside ASCII loses its case markers in fastai.")
    if lang.normalize is not None:
        notes.append(f"The model's text was normalised first ({lang.name}: `ulmfit.get_lang('{lang.code}')."
                     "normalize`); do the same to your texts for the closest match.")
    return {"name": name, "bwd_name": f"{name}_bwd", "folder": folder, "lang": lang.code, "segmenter": segmenter,
            "tokenizer_code": code, "rules": rules, "rules_code": "[" + ", ".join(rules) + "]",
            "lm_config": f"dict(awd_lstm_lm_config, {sizes}{dropouts})",
            "clas_config": f"dict(awd_lstm_clas_config, {sizes})", "drop_mult": config.get("drop_mult", 1.0),
            "bwd": "bwd" in (config.get("directions") or []), "rules_note": " ".join(notes)}


def fastai_snippet(usage: dict[str, Any]) -> str:
    """The plain-fastai code for an exported language model (`fastai_usage`), as Markdown."""
    import jinja2

    return jinja2.Template(_template_text("fastai.md")).render(**usage).strip()


def _template_text(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8").strip()


def _lm_fields(config: dict, bench: list[dict], name: str) -> dict[str, Any]:
    directions = config.get("directions") or []
    fastai_name = re.sub(r"[^A-Za-z0-9._-]", "-", name)
    licence = license_of(config)
    return {
        "which": " and ".join(VARIANTS[d] for d in directions) or "no",
        "plural": "s" if len(directions) > 1 else "",
        "made": "converted to this format by" if config.get("converted_from") else "trained with",
        "converted": bool(config.get("converted_from")),
        "licence_note": (" The weights are derived from Wikipedia text and are shared under the same licence, "
                         "CC BY-SA 4.0." if licence == WIKIPEDIA_LICENSE else f" Licence: `{licence}`."),
        "corpus_lines": _corpus_lines(config),
        "training_table": _training_table(config),
        "metrics_table": _metrics_table(config.get("metrics") or {}),
        "bench_table": _bench_table(bench),
        "sentencepiece": (config.get("tokenizer") or {}).get("type") == "sentencepiece",
        "multifit_citation": _template_text("multifit_citation.md"),
        "has_fwd": "fwd" in directions, "has_bwd": "bwd" in directions, "fastai_name": fastai_name,
        "fastai_section": fastai_snippet(fastai_usage(config, fastai_name)),
    }


def _classifier_fields(config: dict, bench: list[dict]) -> dict[str, Any]:
    labels = config.get("labels") or []
    lm = config.get("lm") or {}
    evals = _classifier_eval_results(config)
    tables = [_metrics_table(config.get("metrics") or {})]
    if evals:
        tables.append("Evaluation:\n\n| task | dataset | split | metric | value |\n|---|---|---|---|---|\n" + "\n".join(
            f"| {r.task_name or r.task_type} | {r.dataset_name} | {r.dataset_split or '-'} | "
            f"{r.metric_name or r.metric_type} | {_fmt(r.metric_value)} |" for r in evals))
    if bench:
        tables.append("Benchmarks:\n\n" + _bench_table(bench))
    finetune = config.get("finetune") or {}
    settings = ", ".join(f"{k} {_fmt(v)}" for k, v in finetune.items() if isinstance(v, (int, float, str, list))
                         and not isinstance(v, bool))
    return {
        "kind": "multi-label" if config.get("multi_label") else "single-label",
        "n_labels": len(labels),
        "shown_labels": ", ".join(f"`{x}`" for x in labels[:20]) + (", …" if len(labels) > 20 else ""),
        "start": (f"the language model `{lm.get('spec')}`" if lm.get("pretrained", True) and lm.get("spec")
                  else "a randomly initialised encoder (no pretraining)"),
        "settings": settings or "See `config.json`.",
        "results": "\n\n".join(tables),
    }
