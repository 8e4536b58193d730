"""`ulmfit prepare`: a source of articles → cleaned text → tokenizer → token-id files and `meta.json`.

Three stages write a corpus directory (`corpus.py` owns its format), each remembered by a key of everything it
depends on, so a re-run redoes only what an option changed: `extract` (clean the source into `text/`),
`tokenizer` (train SentencePiece, or build the word vocabulary) and `ids` (encode both splits). What each stage
counts goes into `text/stats.json` as it finishes, and from there into `meta.json`, which is written last.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import json
import logging
import random
import resource
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm.auto import tqdm

from ulmfit import __version__
from ulmfit.batching import batched
from ulmfit.errors import UlmfitError
from ulmfit.files import file_digest, output_lock, recover_swap, swap_in
from ulmfit.langs import Language, get_lang
from ulmfit.langs.base import HF_WIKIPEDIA
from ulmfit.langs.rules import default_rules, make_preprocessor
from ulmfit.pretrain import tokenizer as tk
from ulmfit.pretrain.clean import clean_wikitext, tidy_plain
from ulmfit.pretrain.corpus import SPLITS, Corpus
from ulmfit.pretrain.parallel import WorkerPool, default_workers, ordered_map
from ulmfit.pretrain.sources import Batch, DumpSource, HubSource, Source, TextSource

log = logging.getLogger(__name__)

PIPELINE_VERSION = 1  # bump when cleaning or encoding gives different output for the same inputs
BATCH_DOCS = 256
MIN_VALID_TOKENS = 10_000  # fewer, and a corpus's valid perplexity says little: warn


@dataclass
class PrepareOptions:
    """Every option that shapes a corpus. `vocab_size` None means 15,000 for SentencePiece, 60,000 for words."""

    tokenizer: str = "sentencepiece"
    vocab_size: int | None = None
    min_freq: int = 3
    valid_frac: float = 0.05
    max_tokens: int | None = None
    min_chars: int = 200
    # SentencePiece trains on a sample of about this many characters of train text. Its trainer holds about 30
    # bytes per character (measured: 5M characters 181 MB, 18M 568 MB of RSS), so this bounds prepare's memory.
    sp_chars: int = 20_000_000
    rules: list[str] | None = None

    def __post_init__(self) -> None:
        if self.tokenizer not in ("sentencepiece", "word"):
            raise UlmfitError(f"unknown tokenizer '{self.tokenizer}'; use 'sentencepiece' or 'word'.")
        if self.vocab_size is None:
            self.vocab_size = 15_000 if self.tokenizer == "sentencepiece" else 60_000
        if not 0 <= self.valid_frac < 1:
            raise UlmfitError(f"--valid-frac must be at least 0 and below 1, not {self.valid_frac}.")
        if self.max_tokens is not None and self.max_tokens <= 0:
            raise UlmfitError(f"--max-tokens must be positive, not {self.max_tokens}.")
        if self.vocab_size < len(tk.SPECIAL_TOKENS) + 1:
            raise UlmfitError(f"--vocab-size must be above {len(tk.SPECIAL_TOKENS)}, not {self.vocab_size}.")


def make_source(lang: Language, min_chars: int, *, dump: str | Path | None = None, hf_dataset: str | None = None,
                text: list[Path] | None = None, sample: bool = False, cache_dir: Path | None = None,
                force_lang: bool = False) -> Source:
    """The one source named by the options (exactly one of them)."""
    given = [name for name, value in (("--dump", dump), ("--hf-dataset", hf_dataset), ("--text", text),
                                      ("--sample", sample)) if value]
    if len(given) != 1:
        raise UlmfitError(
            "give exactly one source: --dump PATH|URL|latest, --hf-dataset, --text PATH or --sample"
            + (f" (got {', '.join(given)})." if given else ".")
        )
    if sample:
        from ulmfit.sample import sample_dump

        return DumpSource(lang=lang, min_chars=min_chars, path=sample_dump(lang.code), sample=True)
    if dump:
        from ulmfit.pretrain.download import resolve_dump

        spec = str(dump)
        path = resolve_dump(spec, lang, cache_dir)
        url = spec if spec == "latest" or "://" in spec else None
        return DumpSource(lang=lang, min_chars=min_chars, path=path, url=lang.dump_url() if url == "latest" else url,
                          force_lang=force_lang)
    if hf_dataset:
        config = lang.hf_config if hf_dataset == HF_WIKIPEDIA else None
        return HubSource(lang=lang, min_chars=min_chars, dataset=hf_dataset, config_name=config)
    return TextSource(lang=lang, min_chars=min_chars, paths=[Path(p) for p in text])


@dataclass
class _Run:
    """What the stages of one `prepare` share; `stats` is the content of `text/stats.json`, kept in memory."""

    corpus: Corpus
    lang: Language
    rules: list[str]
    options: PrepareOptions
    workers: int
    stats: dict

    def encoders(self, kind: str, model: Path | None = None, dtype: np.dtype | None = None) -> WorkerPool:
        """Worker processes for encoding both splits, each with its encoder (`_init_encoder`); no more of them than
        there are batches, since each one loads its tokenizer (spaCy takes a second) once."""
        batches = sum(-(-self.stats["articles"][s] // BATCH_DOCS) for s in SPLITS)
        return WorkerPool(max(1, min(self.workers, batches)), initializer=_init_encoder,
                          initargs=(kind, model and str(model), self.lang.code, self.rules, dtype and dtype.name))

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage; once it has finished, record its wall and CPU seconds (this process and its workers)
        and save the stats."""
        start, cpu = time.perf_counter(), _cpu_seconds()
        yield
        first = name == "extract"
        self.stats["seconds"] = ({} if first else self.stats.get("seconds", {})) | {
            name: round(time.perf_counter() - start, 3)}
        self.stats["cpu_seconds"] = ({} if first else self.stats.get("cpu_seconds", {})) | {
            name: round(_cpu_seconds() - cpu, 3)}
        self.corpus.write_stats(self.stats)


def prepare_corpus(lang: str | Language, out: Path | str, *, dump: str | Path | None = None,
                   hf_dataset: str | None = None, text: list[Path] | None = None, sample: bool = False,
                   options: PrepareOptions | None = None, workers: int | None = None,
                   cache_dir: Path | None = None, force_lang: bool = False) -> dict:
    """Prepare a corpus directory from one source and return its `meta.json` content. A dump of another Wikipedia
    than `lang`'s is refused unless `force_lang`."""
    lang = get_lang(lang) if isinstance(lang, str) else lang
    options = options or PrepareOptions()
    rules = options.rules if options.rules is not None else default_rules(lang, options.tokenizer)
    make_preprocessor(lang, rules)  # fail on an unknown rule before any work
    if options.tokenizer == "word" and lang.word_tokenizer is None:
        raise UlmfitError(
            f"{lang.name} ({lang.code}) has no word tokenizer; use --tokenizer sentencepiece for this language."
        )
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UlmfitError(f"output path {out} is a file; choose a directory for --out.")
    source = make_source(lang, options.min_chars, dump=dump, hf_dataset=hf_dataset, text=text, sample=sample,
                         cache_dir=cache_dir, force_lang=force_lang)
    keys = {"extract": _key(PIPELINE_VERSION, lang.code, source.identity(), options.min_chars, options.valid_frac)}
    keys["tokenizer"] = _key(keys["extract"], options.tokenizer, options.vocab_size, options.min_freq,
                             options.sp_chars, rules, lang.sp_coverage)
    keys["ids"] = _key(keys["tokenizer"], options.max_tokens)

    with output_lock(out):
        recover_swap(out)
        final = Corpus(out)
        if final.meta_file.exists() and final.read_stamps() == keys:
            log.info("%s is already prepared with these inputs; nothing to do", out)
            return json.loads(final.meta_file.read_text(encoding="utf-8"))
        work = Corpus(out.parent / f".{out.name}.partial")
        _writable_dir(work.path)
        stamps = _start_from(work, final, keys)
        run = _Run(work, lang, rules, options, workers or default_workers(), work.read_stats() or {})
        try:
            _run_stages(run, source, stamps, keys)
        except BaseException:
            if "extract" not in stamps:  # nothing worth keeping for the next try
                shutil.rmtree(work.path, ignore_errors=True)
            raise
        work.write_meta(_meta(run, source))
        swap_in(work.path, out)
    meta = work.meta
    log.info("corpus ready in %s: %s train / %s valid tokens", out, f"{meta['tokens']['train']:,}",
             f"{meta['tokens']['valid']:,}")
    return meta


def _start_from(work: Corpus, final: Corpus, keys: dict) -> dict:
    """The stages `work` (a hidden sibling of `--out`, where a run builds its corpus before swapping it in)
    can skip: those its own leftovers of an earlier run have done with the same inputs, or else those the
    finished corpus at `--out` has, whose files are linked in. Returns the stamps of those stages."""
    def done(stamps: dict) -> dict:
        kept = {}
        for stage in keys:  # in order: each key includes the one before
            if stamps.get(stage) != keys[stage]:
                break
            kept[stage] = keys[stage]
        return kept

    own = done(work.read_stamps())
    theirs = done(final.read_stamps()) if final.meta_file.exists() else {}
    if len(theirs) > len(own):
        shutil.rmtree(work.path)
        work.path.mkdir(parents=True)
        work.link_files_from(final)
        own = theirs
    work.write_stamps(own)
    return own


def _run_stages(run: _Run, source: Source, stamps: dict, keys: dict) -> None:
    """Clean, train the tokenizer, encode: each stage that `stamps` does not already mark as done."""
    corpus, options = run.corpus, run.options
    if stamps.get("extract") != keys["extract"] or not run.stats:
        stamps.clear()
        corpus.write_stamps(stamps)
        with run.stage("extract"):
            run.stats = _extract(source, corpus, options.valid_frac, run.workers)
        stamps["extract"] = keys["extract"]
        corpus.write_stamps(stamps)
    else:
        log.info("cleaned text of %s is up to date; not reading the source again", corpus.path.name.strip("."))

    sentencepiece = options.tokenizer == "sentencepiece"
    if sentencepiece and stamps.get("tokenizer") != keys["tokenizer"]:
        stamps.pop("ids", None)
        with run.stage("tokenizer"):
            _train_sentencepiece(run)
        stamps["tokenizer"] = keys["tokenizer"]
        corpus.write_stamps(stamps)
    elif sentencepiece:
        log.info("the SentencePiece model is up to date")
    if stamps.get("ids") != keys["ids"] or stamps.get("tokenizer") != keys["tokenizer"]:
        with run.stage("encode"):
            run.stats["encoded"] = _encode_sentencepiece(run) if sentencepiece else _encode_words(run)
        stamps.update(tokenizer=keys["tokenizer"], ids=keys["ids"])
        corpus.write_stamps(stamps)


# --- stage 1: source → cleaned text ---------------------------------------------------------------------------

def _clean_batch(batch: Batch) -> tuple[list[tuple[str | None, str]], Batch]:
    """In a worker: `(text or None, status)` per article or skipped page, and the batch, its items dropped, with
    what reading it found (`Source.done` takes it)."""
    config = batch.config
    results: list[tuple[str | None, str]] = []
    for item in batch.articles():
        if isinstance(item, str):
            results.append((None, item))
        elif item[2] == "wikitext":
            results.append(clean_wikitext(item[0], item[1], config))
        else:
            results.append(tidy_plain(item[0], item[1], config.min_chars))
    batch.items = []
    return results, batch


def _extract(source: Source, corpus: Corpus, valid_frac: float, workers: int) -> dict:
    """Clean the source into the corpus's text files; returns the stats of what was kept and skipped."""
    articles, chars, lines = Counter(), Counter(), Counter()
    statuses: Counter = Counter()
    held: str | None = None  # the last train article, kept back in case the valid split ends up empty

    with corpus.text_writer() as files:
        def write(split: str, doc: str) -> None:
            corpus.write_doc(files[split], doc)
            articles[split] += 1
            chars[split] += len(doc)
            lines[split] += doc.count("\n") + 1

        for results, batch in ordered_map(_clean_batch, source.batches(BATCH_DOCS), workers):
            source.done(batch)
            for doc, status in results:
                statuses[status] += 1
                if doc is None:
                    continue
                if unit_hash(doc_key(doc), "split") < valid_frac:
                    write("valid", doc)
                else:
                    if held is not None:
                        write("train", held)
                    held = doc
        if held is not None:
            write("valid" if valid_frac > 0 and articles["valid"] == 0 and articles["train"] > 0 else "train", held)
        skipped = {k: v for k, v in sorted(statuses.items()) if k != "ok"}
        if articles["train"] == 0:
            raise UlmfitError(
                f"the source has no articles to train on (skipped: {_fmt_counts(skipped) or 'nothing read'}); "
                "check that it is the right file, or lower --min-chars."
            )
    if articles["valid"] == 0:
        log.warning("the valid split is empty (%d article in all); validation needs a larger source",
                    articles["train"])
    log.info("cleaned %d articles (%d train, %d valid); skipped %s", articles.total(), articles["train"],
             articles["valid"], _fmt_counts(skipped) or "nothing")
    return {"articles": {s: articles[s] for s in SPLITS}, "chars": {s: chars[s] for s in SPLITS},
            "lines": {s: lines[s] for s in SPLITS}, "skipped": skipped, "source": source.describe()}


def doc_key(doc: str) -> str:
    """What splits and samples hash: the first line, which is the title for Wikipedia articles."""
    return doc.split("\n", 1)[0]


def unit_hash(key: str, salt: str) -> float:
    """A number in [0, 1) fixed by `key`: the same article lands in the same split on every run and machine."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8, person=salt.encode()[:16]).digest()
    return int.from_bytes(digest, "big") / 2**64


def _sampled(docs: Iterator, keep: float, key=doc_key) -> Iterator:
    """The items whose sample hash falls below `keep` (all of them when `keep` is 1)."""
    return docs if keep >= 1 else (d for d in docs if unit_hash(key(d), "sample") < keep)


# --- stage 2 and 3, SentencePiece -----------------------------------------------------------------------------

def _train_sentencepiece(run: _Run) -> None:
    """Train the SentencePiece model on a reproducible sample of about `sp_chars` characters of train lines."""
    corpus, options = run.corpus, run.options
    preprocess = make_preprocessor(run.lang, run.rules)
    keep = min(1.0, 1.1 * options.sp_chars / max(1, run.stats["chars"]["train"]))
    rng = random.Random(0)
    taken = {"lines": 0, "chars": 0}

    def lines() -> Iterator[str]:
        for doc in corpus.read_docs("train"):
            for line in doc.split("\n"):
                if taken["chars"] >= options.sp_chars:
                    return
                if keep >= 1 or rng.random() < keep:
                    taken["lines"] += 1
                    taken["chars"] += len(line)
                    yield preprocess(line)

    work = corpus.path / ".spm-tmp"
    shutil.rmtree(work, ignore_errors=True)
    log.info("training a SentencePiece unigram model (vocabulary up to %d) on about %s characters of train text",
             options.vocab_size, f"{min(run.stats['chars']['train'], options.sp_chars):,}")
    model = tk.train_sentencepiece(lines(), work, options.vocab_size, run.lang.sp_coverage, run.workers)
    model.replace(corpus.path / tk.SP_MODEL)
    shutil.rmtree(work, ignore_errors=True)
    run.stats["sentencepiece_sample"] = dict(taken)


_ENCODER = None  # the worker process's encoder, built once by `_init_encoder`
_DTYPE = None  # and the dtype of its ids


def _init_encoder(kind: str, model: str | None, lang_code: str, rules: list[str], dtype: str | None = None) -> None:
    global _ENCODER, _DTYPE
    lang = get_lang(lang_code)
    _ENCODER = tk.SentencePieceEncoder(Path(model), lang, rules) if kind == "sentencepiece" \
        else tk.WordTokenizer(lang, rules)
    _DTYPE = np.dtype(dtype) if dtype else None


def _tokenize_batch(docs: list[str]) -> list[list[str]]:
    """In a worker: word tokens per document."""
    return _ENCODER(docs)


def _encode_batch(docs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """In a worker: the documents' ids, each opened by xxbos, as one array (cheap to send back, unlike lists of
    ints), and each document's length in it."""
    ids = _ENCODER(docs)
    return tk.with_bos(ids, _DTYPE), np.fromiter((len(x) + 1 for x in ids), dtype=np.int64, count=len(ids))


def _encode_sentencepiece(run: _Run) -> dict:
    corpus, options = run.corpus, run.options
    model = corpus.path / tk.SP_MODEL
    encoder = tk.SentencePieceEncoder(model, run.lang, run.rules)
    keep = 1.0
    if options.max_tokens:  # estimate tokens per character on the first 2M characters of train text
        sample, n = [], 0
        for doc in corpus.read_docs("train"):
            sample.append(doc)
            n += len(doc)
            if n > 2_000_000:
                break
        per_char = sum(len(ids) + 1 for ids in encoder(sample)) / max(1, n)
        keep = min(1.0, 1.05 * options.max_tokens / max(1.0, per_char * run.stats["chars"]["train"]))
    with run.encoders("sentencepiece", model, tk.ids_dtype(len(encoder))) as pool:
        def encoded(split: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
            docs = _sampled(corpus.read_docs(split), keep if split == "train" else 1.0)
            return pool.map(_encode_batch, batched(docs, BATCH_DOCS))

        return _write_ids(run, encoded, len(encoder), keep)


def _write_ids(run: _Run, encoded, vocab_size: int, keep: float) -> dict:
    """Write each split's ids from `encoded(split)`, batches of (ids with xxbos, document lengths); stop the train
    split before it passes `max_tokens` (which samples and caps the train split only: the valid split stays whole)."""
    max_tokens = run.options.max_tokens
    dtype = tk.ids_dtype(vocab_size)
    counts = {"articles": {}, "tokens": {}, "sample_rate": keep, "vocab_size": vocab_size, "dtype": dtype.name}
    for split in SPLITS:
        n_docs = n_tokens = 0
        room = max_tokens if split == "train" and max_tokens else None
        with run.corpus.ids_writer(split) as f, tqdm(total=run.stats["articles"][split], desc=f"encoding {split}",
                                                     unit=" articles", disable=None) as bar:
            for ids, sizes in encoded(split):
                bar.update(len(sizes))
                full = True
                if room is not None:
                    ends = np.cumsum(sizes)
                    fits = int(np.searchsorted(ends, room, side="right"))
                    full = fits == len(sizes)
                    used = int(ends[fits - 1]) if fits else 0
                    ids, sizes, room = ids[:used], sizes[:fits], room - used
                f.write(ids.astype(dtype, copy=False).tobytes())
                n_docs += len(sizes)
                n_tokens += len(ids)
                if not full:
                    break
            if split == "train" and n_docs == 0:
                raise UlmfitError(f"no article fits in --max-tokens {max_tokens:,}; raise it.")
        counts["articles"][split], counts["tokens"][split] = n_docs, n_tokens
    if counts["tokens"]["valid"] < MIN_VALID_TOKENS:
        log.warning("the valid split holds %d tokens (%d articles): too few for a reliable perplexity; give a larger "
                    "source or a larger --valid-frac", counts["tokens"]["valid"], counts["articles"]["valid"])
    return counts


# --- stage 2 and 3, words ------------------------------------------------------------------------------------

def _encode_words(run: _Run) -> dict:
    """Tokenize both splits once into temporary files, build the vocabulary from the train counts, then map."""
    corpus, options = run.corpus, run.options
    tok_dir = corpus.path / ".tokens-tmp"
    tok_dir.mkdir(exist_ok=True)
    counts: Counter = Counter()
    total = 0
    with run.encoders("word") as pool:
        for split in SPLITS:
            with gzip.open(tok_dir / f"{split}.jsonl.gz", "wt", encoding="utf-8", compresslevel=1) as f, \
                    tqdm(total=run.stats["articles"][split], desc=f"tokenizing {split}", unit=" articles",
                         disable=None) as bar:
                for batch in pool.map(_tokenize_batch, batched(corpus.read_docs(split), BATCH_DOCS)):
                    for toks in batch:
                        f.write(json.dumps(toks, ensure_ascii=False) + "\n")
                        if split == "train":
                            counts.update(toks)
                            total += len(toks) + 1
                    bar.update(len(batch))
    itos = tk.build_word_vocab(counts, options.vocab_size, options.min_freq)
    tk.write_word_vocab(corpus.path / tk.WORD_VOCAB, itos)
    stoi = {t: i for i, t in enumerate(itos)}
    keep = min(1.0, options.max_tokens / total) if options.max_tokens else 1.0
    dtype = tk.ids_dtype(len(itos))

    def encoded(split: str) -> Iterator[list[list[int]]]:
        # Articles are sampled by their title line, as on the SentencePiece path.
        with gzip.open(tok_dir / f"{split}.jsonl.gz", "rt", encoding="utf-8") as f:
            pairs = zip(map(doc_key, corpus.read_docs(split)), f)
            kept = _sampled(pairs, keep if split == "train" else 1.0, key=lambda pair: pair[0])
            for batch in batched(kept, BATCH_DOCS):
                ids = [[stoi.get(t, tk.UNK) for t in json.loads(line)] for _, line in batch]
                yield tk.with_bos(ids, dtype), np.array([len(x) + 1 for x in ids], dtype=np.int64)

    result = _write_ids(run, encoded, len(itos), keep)
    shutil.rmtree(tok_dir, ignore_errors=True)
    return result


# --- bookkeeping ---------------------------------------------------------------------------------------------

def _meta(run: _Run, source: Source) -> dict:
    lang, options, stats = run.lang, run.options, run.stats
    counts = stats["encoded"]
    tok_file = run.corpus.path / (tk.SP_MODEL if options.tokenizer == "sentencepiece" else tk.WORD_VOCAB)
    return {
        "lang": lang.code,
        "lang_name": lang.name,
        "generic_adapter": lang.generic,
        "source": stats["source"],
        "tokenizer": options.tokenizer,
        "tokenizer_file": tok_file.name,
        "tokenizer_hash": "sha256:" + file_digest(tok_file),
        "vocab_size": counts["vocab_size"],
        "dtype": counts["dtype"],
        "special_tokens": tk.SPECIAL_TOKENS,
        "rules": run.rules,
        "articles": counts["articles"],
        "tokens": counts["tokens"],
        "sample_rate": counts["sample_rate"],
        "cleaned": {"articles": stats["articles"], "chars": stats["chars"]},
        "skipped": stats["skipped"],
        "options": asdict(options) | {"rules": run.rules},
        "seconds": stats.get("seconds", {}),
        "cpu_seconds": stats.get("cpu_seconds", {}),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "ulmfit_version": __version__,
    }


def _cpu_seconds() -> float:
    """User and system CPU seconds of this process and of its finished worker processes."""
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _fmt_counts(counts: dict) -> str:
    return ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in sorted(counts.items()) if v)


def _writable_dir(out: Path) -> None:
    """Make `out` if needed and check that it takes files."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UlmfitError(f"cannot write to the output directory {out.parent} ({e.strerror}); choose another "
                          "--out.") from e
