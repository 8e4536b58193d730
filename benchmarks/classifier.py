"""What a trained ULMFiT classifier does: predict, evaluate, record its scores.

Its directory (what `ulmfit finetune` writes, what `ulmfit push` publishes) is a model directory of format
`ulmfit-classifier` (`ulmfit.pretrain.modeldir`): `config.json` (language, tokenizer spec, architecture, labels,
the language model it started from, the fine-tuning config, valid metrics and recorded `eval_results`), the
tokenizer, `fwd/` and `bwd/model.safetensors` (fastai's `get_text_classifier` state dicts), `labels.json`,
`metrics.json` (per-epoch rows of every stage) and the model card.

The forward and backward classifiers are ensembled by averaging their probabilities (softmax for single-label
tasks, sigmoid for multi-label ones).

Language check: text the tokenizer cannot read (another script, another language's vocabulary) shows up as
unknown tokens (`xxunk`, or SentencePiece byte pieces). A text whose share of unknown tokens is more than
`MISMATCH_MARGIN` above the training text's looks like another language. When more than half of the texts given to
`predict_proba` (or the single text given) look so, that is an error, since the probabilities would mean nothing;
when fewer do, a warning gives their count. Text in the same script (German through an English SentencePiece
model) mostly passes: the check catches text the model cannot read, not every language change.

Long texts: the classifier reads the first `max_tokens` tokens of a text (`MAX_TOKENS_PER_TEXT` unless the
classifier's config or the caller says otherwise) and a warning counts the texts that were longer. Only the head
of a long text is tokenized, so a 5 MB text costs what its first tokens cost.
"""
from __future__ import annotations

import csv
import io
import logging
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ulmfit.batching import batched
from ulmfit.benchmarks.data import LabelledTexts
from ulmfit.benchmarks.loaders import allow_large_csv_fields, encoding_error, name_the_encoding, python_encoding
from ulmfit.errors import UlmfitError
from ulmfit.pretrain.card import render_card
from ulmfit.pretrain.modeldir import CLASSIFIER_FORMAT, ModelDir
from ulmfit.pretrain.tokenizer import PAD, SPECIAL_TOKENS, UNK, TextTokenizer

log = logging.getLogger(__name__)

ENSEMBLE = "ensemble"
METRIC_NAMES = ("accuracy", "macro_f1", "micro_f1")
_METRIC_TITLES = {"accuracy": "Accuracy", "macro_f1": "Macro F1", "micro_f1": "Micro F1"}
# An unknown-token share this far above the training text's means the text is not in the classifier's language.
MISMATCH_MARGIN = 0.3
# The first tokens of a text that fine-tuning and prediction read: longer than most documents (an IMDb review is
# about 300), short enough that a paper-sized model reads it in seconds on a CPU.
MAX_TOKENS_PER_TEXT = 5_000


# --- metrics ----------------------------------------------------------------------------------------------------

def targets_array(labels: Sequence, classes: list[str], multi_label: bool) -> np.ndarray:
    """Class indices (single-label) or a multi-hot matrix (multi-label) for string labels."""
    index = {c: i for i, c in enumerate(classes)}
    try:
        if not multi_label:
            return np.array([index[y] for y in labels], dtype=np.int64)
        hot = np.zeros((len(labels), len(classes)), dtype=np.float32)
        for row, ys in enumerate(labels):
            hot[row, [index[y] for y in ys]] = 1
        return hot
    except KeyError as e:
        raise UlmfitError(f"label {e.args[0]!r} is not one of the classifier's labels ({', '.join(classes)}).") from None


def scores(targets: np.ndarray, probs: np.ndarray, multi_label: bool, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, macro-F1 and micro-F1 of `probs` against `targets` (see `targets_array`), by scikit-learn.

    Multi-label: a label is predicted at `threshold`; accuracy is exact-match (every label of a text right), and
    macro-F1 averages the labels that occur in the targets or the predictions, as it does for single-label data.
    """
    from sklearn.metrics import accuracy_score, f1_score

    if not len(targets):
        return dict.fromkeys(METRIC_NAMES, 0.0)
    if multi_label:
        truth, pred = targets.astype(int), (probs >= threshold).astype(int)
        present = np.flatnonzero(truth.any(0) | pred.any(0))
    else:
        truth, pred = targets, probs.argmax(1)
        present = np.union1d(truth, pred)
    macro = f1_score(truth, pred, labels=present, average="macro", zero_division=0) if len(present) else 0.0
    return {"accuracy": float(accuracy_score(truth, pred)), "macro_f1": float(macro),
            "micro_f1": float(f1_score(truth, pred, average="micro", zero_division=0))}


# --- the classifier ---------------------------------------------------------------------------------------------

class Classifier:
    """A trained ULMFiT text classifier: one model per direction, its tokenizer and its config."""

    def __init__(self, models: dict[str, torch.nn.Module], tokenizer: TextTokenizer, config: dict,
                 model_dir: ModelDir | None = None, max_tokens: int | None = None):
        self.models = {d: m.eval() for d, m in models.items()}
        self.tokenizer, self.config, self.model_dir = tokenizer, config, model_dir
        self._unknown = UnknownTokens(tokenizer)
        self.max_tokens = max_tokens  # the setter checks it

    @classmethod
    def from_pretrained(cls, spec: str | Path, *, revision: str | None = None, cache_dir: str | Path | None = None,
                        force_download: bool = False, token: str | bool | None = None, local_files_only: bool = False,
                        device: str | torch.device = "cpu", max_tokens: int | None = None) -> "Classifier":
        """A classifier directory, or a Hub repository in that format (`ORG/NAME` or `hf-hub:ORG/NAME[@REVISION]`);
        `revision`, `cache_dir`, `force_download`, `token` and `local_files_only` are huggingface_hub's.
        `max_tokens`: how many tokens of each text to read (default: what the classifier was trained with)."""
        from ulmfit.zoo.pretrained import open_model

        model_dir = open_model(spec, kind=CLASSIFIER_FORMAT, revision=revision, cache_dir=cache_dir,
                               force_download=force_download, token=token, local_files_only=local_files_only)
        return cls.from_model_dir(model_dir, device, max_tokens)

    @classmethod
    def from_model_dir(cls, model_dir: ModelDir, device: str | torch.device = "cpu",
                       max_tokens: int | None = None) -> "Classifier":
        """The classifier of an opened classifier directory."""
        models = {}
        for d in model_dir.directions:
            if not model_dir.weights(d).is_file():
                raise UlmfitError(f"{model_dir.spec} lacks {d}/{model_dir.weights(d).name}, which its config lists; "
                                  "download or train it again.")
            models[d] = model_dir.load_classifier(d, device)
        return cls(models, model_dir.tokenizer, model_dir.config, model_dir, max_tokens)

    @property
    def max_tokens(self) -> int:
        """How many tokens of a text (xxbos included) the classifier reads; the rest of a longer text is left out."""
        return self._max_tokens

    @max_tokens.setter
    def max_tokens(self, value: int | None) -> None:
        value = self.config.get("head", {}).get("max_tokens_per_text", MAX_TOKENS_PER_TEXT) if value is None \
            else value
        self._max_tokens = check_max_tokens(value)

    def save_pretrained(self, save_directory: str | Path) -> Path:
        """Write the classifier directory (the models as they are now); `from_pretrained` loads it again."""
        from ulmfit.zoo.pretrained import save_model_dir

        return save_model_dir(self._source(), save_directory, self.models)

    def push_to_hub(self, repo_id: str, *, private: bool = False, revision: str | None = None,
                    create_pr: bool = False, token: str | None = None, commit_message: str | None = None,
                    bench_results: Path | str | list[dict] | None = None, replace_card: bool = False) -> dict:
        """Publish the classifier directory `save_pretrained` would write to the Hub repository `repo_id`
        (created when new): see `ulmfit.zoo.hub.push_model`. Returns the repository URL and the commit."""
        from ulmfit.zoo.pretrained import push_model_dir

        return push_model_dir(self._source(), self.models, repo_id, private=private, revision=revision,
                              create_pr=create_pr, token=token, commit_message=commit_message,
                              bench_results=bench_results, replace_card=replace_card)

    def _source(self) -> ModelDir:
        if self.model_dir is None:
            raise UlmfitError("only a classifier loaded with Classifier.from_pretrained can be saved.")
        self.model_dir.config = self.config
        return self.model_dir

    @property
    def labels(self) -> list[str]:
        return self.config["labels"]

    @property
    def multi_label(self) -> bool:
        return self.config["multi_label"]

    @property
    def directions(self) -> list[str]:
        return list(self.models)

    def encode(self, texts: Iterable[str]) -> list[np.ndarray]:
        """Token ids (with `xxbos`) as the classifier was trained on them: the first `max_tokens` of each text."""
        return encode_texts(self.tokenizer, texts, self.max_tokens, np.int64)

    def predict_proba(self, texts: str | Sequence[str], direction: str = ENSEMBLE, bs: int = 64) -> np.ndarray:
        """Class probabilities, one row per text in the order given: softmax (single-label) or sigmoid (multi-label).

        `direction="ensemble"` is the mean of the directions' probabilities. Texts are batched by length;
        empty texts and texts in another language than the classifier's are refused with an `UlmfitError`.
        """
        if direction not in (*self.models, ENSEMBLE):
            raise UlmfitError(f"direction must be one of {', '.join([*self.models, ENSEMBLE])}, not {direction!r}.")
        return self._probabilities(self._checked_ids(texts), direction, bs)

    def predict(self, texts: str | Sequence[str], direction: str = ENSEMBLE, threshold: float = 0.5,
                bs: int = 64) -> list:
        """The predicted label per text; for a multi-label classifier, the list of labels at `threshold` or above."""
        return self.decide(self.predict_proba(texts, direction=direction, bs=bs), threshold)

    def decide(self, probs: np.ndarray, threshold: float = 0.5) -> list:
        """Labels from probabilities: the likeliest (single-label), or those at `threshold` or above (multi-label)."""
        if self.multi_label:
            return [[self.labels[j] for j in np.flatnonzero(row >= threshold)] for row in probs]
        return [self.labels[j] for j in probs.argmax(1)]

    def evaluate(self, data: LabelledTexts, metric: str | Sequence[str] | None = None, bs: int = 64,
                 record: bool = False, dataset: dict | None = None) -> dict:
        """Scores per direction and for the ensemble: `{"fwd": {...}, "bwd": {...}, "ensemble": {...}, "n": N}`.

        `metric` picks among accuracy, macro_f1 and micro_f1 (default: all). With `record=True` the ensemble's
        scores are added to `eval_results` in the saved config and model card; `dataset` then names the data:
        `dataset_name`, `dataset_type` (its Hub id) and `dataset_split` (default "test"), optionally `task_id`
        and `task_name` (default text-classification).
        """
        names = list(METRIC_NAMES) if metric is None else [metric] if isinstance(metric, str) else list(metric)
        unknown = sorted(set(names) - set(METRIC_NAMES))
        if unknown:
            raise UlmfitError(f"unknown metric(s) {', '.join(unknown)}; use {', '.join(METRIC_NAMES)}.")
        if len(data) == 0:
            raise UlmfitError("there are no texts to evaluate on; give a split with labelled texts.")
        targets = targets_array(data.labels, self.labels, self.multi_label)
        result = self.score_ids(self._checked_ids(data.texts), targets, names, bs)
        if record:
            self._record(result[ENSEMBLE], dataset)
        return result

    def score_ids(self, ids: list[np.ndarray], targets: np.ndarray, metrics: Sequence[str] = METRIC_NAMES,
                  bs: int = 64) -> dict:
        """`evaluate` for texts already encoded (ids with xxbos) and `targets_array` targets, without the language
        check: fine-tuning scores its valid split this way."""
        probs = self._probabilities(ids, "all", bs)
        result: dict = {d: {k: v for k, v in scores(targets, p, self.multi_label).items() if k in metrics}
                        for d, p in probs.items()}
        result["n"] = len(ids)
        return result

    def _record(self, values: dict, dataset: dict | None) -> None:
        if self.model_dir is None:
            raise UlmfitError("record=True needs a classifier loaded from a directory (Classifier.from_pretrained).")
        missing = [k for k in ("dataset_name", "dataset_type") if not (dataset or {}).get(k)]
        if missing:
            raise UlmfitError(f"record=True needs dataset={{...}} with {' and '.join(missing)}.")
        base = {"task_id": "text-classification", "task_name": "Text Classification", "dataset_split": "test"}
        base |= {k: dataset[k] for k in ("task_id", "task_name", "dataset_name", "dataset_type", "dataset_split")
                 if k in dataset}
        rows = [r for r in self.config.get("eval_results", [])
                if not (r["dataset_type"] == base["dataset_type"] and r["dataset_split"] == base["dataset_split"]
                        and r["metric_type"] in values)]
        rows += [base | {"metric_type": k, "metric_name": _METRIC_TITLES[k], "metric_value": round(v, 6)}
                 for k, v in values.items()]
        self.config["eval_results"] = rows
        self.model_dir.finish(self.config, render_card(self.config, self.model_dir.path.resolve().name))

    # -- internals --

    def _checked_ids(self, texts: str | Sequence[str]) -> list[np.ndarray]:
        texts = [texts] if isinstance(texts, str) else list(texts)
        empty = [i for i, t in enumerate(texts) if not str(t).strip()]
        if empty:
            raise UlmfitError(f"{len(empty)} of the {len(texts)} texts are empty (the first is number {empty[0] + 1}); "
                              "remove them or give them text.")
        # bytes that were not UTF-8 on the command line arrive as lone surrogates, which no tokenizer takes
        broken = [i for i, t in enumerate(texts) if _SURROGATE.search(str(t))]
        if broken:
            raise UlmfitError(f"{len(broken)} of the {len(texts)} texts are not valid UTF-8 (the first is number "
                              f"{broken[0] + 1}); give them as UTF-8 text, or in a file with --encoding.")
        ids = self.encode(texts)
        self._check_language(ids)
        return ids

    def _probabilities(self, ids: list[np.ndarray], direction: str, bs: int):
        """One direction's probabilities, the ensemble's, or with direction "all" a dict of every direction and
        the ensemble (the ensemble is the mean of the direction arrays, computed once)."""
        if direction in self.models:
            return self._direction_probs(ids, direction, bs)
        per = {d: self._direction_probs(ids, d, bs) for d in self.models}
        per[ENSEMBLE] = np.mean(np.stack(list(per.values())), axis=0)
        return per if direction == "all" else per[ENSEMBLE]

    @torch.no_grad()
    def _direction_probs(self, ids: list[np.ndarray], direction: str, bs: int) -> np.ndarray:
        from fastai.text.data import pad_input_chunk

        model = self.models[direction]
        device = next(model.parameters()).device
        seq_len = self.config["head"]["seq_len"]
        out = np.zeros((len(ids), len(self.labels)), dtype=np.float32)
        batches = list(_batches([len(x) for x in ids], seq_len, bs))
        for rows in tqdm(batches, desc=f"classifying ({direction})", unit=" batches", disable=None, leave=False):
            samples = [(torch.from_numpy(ids[i].astype(np.int64)[::-1].copy() if direction == "bwd"
                                         else ids[i].astype(np.int64)),) for i in rows]
            x = torch.stack([s[0] for s in pad_input_chunk(samples, pad_idx=PAD, pad_first=True, seq_len=seq_len)])
            logits = model(x.to(device))[0].float()
            probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)
            out[rows] = probs.cpu().numpy()
        return out

    def _check_language(self, ids: list[np.ndarray]) -> None:
        """Refuse texts most of which the tokenizer cannot read (another script, another language); count the rest."""
        trained = self.config.get("data", {}).get("unknown_rate")
        if trained is None:
            return
        limit = trained + MISMATCH_MARGIN
        rates = [u / t for u, t in map(self._unknown.counts, ids) if t]
        odd = sum(r > limit for r in rates)
        lang = self.config["lang"]
        if odd * 2 > len(ids):
            what, they = ((f"{rates[0]:.0%} of the tokens in this text are", "it looks") if len(ids) == 1 else
                          (f"{odd} of the {len(ids)} texts have more than {limit:.0%} of their tokens", "they look"))
            raise UlmfitError(f"{what} unknown to the classifier's {lang} tokenizer (its training text had "
                              f"{trained:.0%}): {they} like another language; use a classifier trained for it.")
        if odd:
            log.warning("%d of %d texts have more than %.0f%% of their tokens unknown to the %s tokenizer: they may "
                        "be in another language, and their predictions are unreliable", odd, len(ids), limit * 100, lang)


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_max_tokens(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise UlmfitError(f"max_tokens_per_text must be a whole number of at least 2 (xxbos and one token), not "
                          f"{value!r}.")
    return value


def encode_head(tokenizer: TextTokenizer, text: str, max_tokens: int) -> tuple[list[int], bool]:
    """The ids (with `xxbos`) of the first `max_tokens` tokens of `text`, and whether the text had more.

    Only a head of a long text is tokenized: about as many characters as should hold the tokens, four times as
    many while they do not. Tokens are local (SentencePiece pieces and words stop at whitespace, which is where the
    head is cut; fastai's rules look at a few characters), so beyond a margin the head's tokens are the text's.
    """
    chars = 16 * max_tokens
    while len(text) > chars:
        cut = max(text.rfind(space, chars // 2, chars) for space in " \n\t")
        ids = tokenizer.encode(text[:cut if cut > 0 else chars])
        if len(ids) > max_tokens + 32:  # the last tokens of a head may differ from the whole text's
            return ids[:max_tokens], True
        chars *= 4
    ids = tokenizer.encode(text)
    return ids[:max_tokens], len(ids) > max_tokens


def encode_texts(tokenizer: TextTokenizer, texts: Iterable[str], max_tokens: int, dtype,
                 what: str = "texts") -> list[np.ndarray]:
    """`encode_head` of every text (with a progress bar on a terminal); a warning counts the texts cut short."""
    texts, out, cut = list(texts), [], 0
    for text in tqdm(texts, desc=f"tokenizing {what}", unit=" texts", disable=None, leave=False):
        ids, longer = encode_head(tokenizer, text, max_tokens)
        out.append(np.asarray(ids, dtype=dtype))
        cut += longer
    if cut:
        log.warning("%d of the %d %s are longer than %d tokens: only their first %d are read (max_tokens_per_text)",
                    cut, len(texts), what, max_tokens, max_tokens)
    return out


def _batches(lengths: list[int], seq_len: int, bs: int) -> Iterable[np.ndarray]:
    """Batches of indices, longest first within a batch (fastai's `SentenceEncoder` needs that), in which every
    length leaves the same remainder modulo `seq_len`.

    `pad_input_chunk` puts a shorter text's leftover padding (the batch length minus its length, modulo
    `seq_len`) after it, and `SentenceEncoder` keeps the last `max_len` positions of the padded batch: with equal
    remainders there is no such padding, so a text gets the same probabilities whatever batch it lands in.
    """
    lengths = np.asarray(lengths)
    for remainder in np.unique(lengths % seq_len):
        group = np.flatnonzero(lengths % seq_len == remainder)
        group = group[np.argsort(-lengths[group], kind="stable")]
        for start in range(0, len(group), bs):
            yield group[start:start + bs]


class UnknownTokens:
    """Counts the tokens a tokenizer could not read: `xxunk`, and the byte pieces of a SentencePiece model with
    byte fallback. fastai's markers (xxbos, xxmaj, …) and SentencePiece's bare word-boundary piece are not text
    tokens and count for neither side: a script the model never saw comes out as `▁ xxunk ▁ xxunk …`."""

    def __init__(self, tokenizer: TextTokenizer):
        unknown, ignored = [UNK], list(range(1, len(SPECIAL_TOKENS)))
        if tokenizer.kind == "sentencepiece":
            unknown += [i for i in range(len(tokenizer)) if tokenizer.sp.is_byte(i)]
            if (boundary := tokenizer.sp.piece_to_id("\u2581")) != UNK:
                ignored.append(boundary)
        self.unknown, self.ignored = np.array(unknown), np.array(ignored)

    def counts(self, ids: np.ndarray) -> tuple[int, int]:
        """(unknown tokens, text tokens) in one text's ids."""
        return int(np.isin(ids, self.unknown).sum()), int((~np.isin(ids, self.ignored)).sum())

    def rate(self, docs: Iterable[np.ndarray]) -> float:
        """The share of unknown tokens over all of `docs`."""
        unknown = total = 0
        for ids in docs:
            u, t = self.counts(ids)
            unknown, total = unknown + u, total + t
        return unknown / total if total else 0.0


# --- batch prediction on a CSV file -----------------------------------------------------------------------------

def predict_csv(classifier: Classifier, src: Path | str, dest: Path | str, text_col: str = "text",
                direction: str = ENSEMBLE, threshold: float = 0.5, bs: int = 64, chunk: int = 4096,
                encoding: str = "utf-8") -> dict:
    """Copy `src` to `dest` with a `prob_<label>` column per class and a `prediction` column.

    The file (in `encoding`) is read `chunk` rows at a time, with a progress bar on a terminal; cells may be of
    any length. Rows with an empty text are skipped (their new columns stay blank) and counted; the counts are
    returned and logged. `dest` appears only when every row is written.
    """
    src, dest = Path(src), Path(dest)
    if src.is_dir():
        raise UlmfitError(f"{src} is a directory: give a CSV file with a '{text_col}' column.")
    if not src.is_file():
        raise UlmfitError(f"{src} does not exist; give a CSV file with a '{text_col}' column.")
    codec = python_encoding(encoding)
    allow_large_csv_fields()
    labels = classifier.labels
    new_cols = [f"prob_{label}" for label in labels] + ["prediction"]
    tmp = dest.with_name(dest.name + ".tmp")
    counts = {"rows": 0, "predicted": 0, "empty": 0}
    with src.open("rb") as raw, tmp.open("w", newline="", encoding="utf-8") as fout, \
            tqdm(total=src.stat().st_size, desc=f"classifying {src.name}", unit="B", unit_scale=True,
                 disable=None) as bar:
        reader = csv.DictReader(io.TextIOWrapper(raw, encoding=codec, newline=""))
        try:
            fields = reader.fieldnames or []
            if text_col not in fields:
                raise UlmfitError(f"{src} has no '{text_col}' column (it has: {', '.join(fields)}); name the text "
                                  "column with --text-col.")
            if clash := sorted(set(new_cols) & set(fields)):
                raise UlmfitError(f"{src} already has the column(s) {', '.join(clash)} that predictions would "
                                  "write; rename them first.")
            writer = csv.DictWriter(fout, fieldnames=[*fields, *new_cols])
            writer.writeheader()
            for rows in batched(reader, chunk):
                keep = [i for i, row in enumerate(rows) if (row[text_col] or "").strip()]
                if keep:
                    probs = classifier.predict_proba([rows[i][text_col] for i in keep], direction=direction, bs=bs)
                    for i, p, chosen in zip(keep, probs, classifier.decide(probs, threshold)):
                        rows[i].update({f"prob_{label}": f"{v:.6f}" for label, v in zip(labels, p)})
                        rows[i]["prediction"] = "|".join(chosen) if classifier.multi_label else chosen
                writer.writerows(rows)
                counts["rows"] += len(rows)
                counts["predicted"] += len(keep)
                counts["empty"] += len(rows) - len(keep)
                bar.update(raw.tell() - bar.n)
        except BaseException as e:
            fout.close()
            tmp.unlink(missing_ok=True)
            if isinstance(e, UnicodeDecodeError):
                offset = raw.tell() - len(e.object) + e.start  # the error counts from the block it decoded
                raise encoding_error(str(src), encoding, e, f"at offset {offset:,}", name_the_encoding("--encoding")) \
                    from None
            if isinstance(e, csv.Error):
                raise UlmfitError(f"{src} is not valid CSV near line {reader.line_num} ({e}): fix the file.") \
                    from None
            raise
    tmp.replace(dest)
    if counts["empty"]:
        log.warning("%d of %d rows have an empty '%s' and were skipped (their prediction columns are blank)",
                    counts["empty"], counts["rows"], text_col)
    return counts
