"""The `ulmfit` command: thin wrappers over the package's functions. Only this module prints."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from ulmfit import __version__
from ulmfit.errors import UlmfitError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Multilingual ULMFiT: pretrain AWD-LSTM language models from Wikipedia and use them.")


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"ulmfit {__version__}")
        raise typer.Exit()


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debugging detail."),
         quiet: bool = typer.Option(False, "--quiet", "-q", help="Log warnings and errors only."),
         version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                      help="Show the version and exit.")) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s" if level == logging.INFO else "%(levelname)s %(name)s: %(message)s")
    logging.getLogger("ulmfit").setLevel(level)
    for client in ("httpx", "httpx2"):  # huggingface_hub's HTTP client logs every request at INFO
        logging.getLogger(client).setLevel(logging.DEBUG if verbose else logging.WARNING)


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def one_of(*choices: str, what: str) -> dict:
    """Option settings for a fixed set of values: `--help` lists them, and any other value gets the package's
    one-line error (exit status 1) rather than click's usage box."""

    def parse(value: str) -> str:
        if value not in choices:
            _fail(f"unknown {what} {value!r}: use {' or '.join(choices)}.")
        return value

    return {"metavar": "[" + "|".join(choices) + "]", "parser": parse}


DIRECTIONS = one_of("fwd", "bwd", "both", what="direction")


def run(fn, *args, **kwargs):
    """Call a package function; turn its `UlmfitError`, or an error of the system (a full disk, a file it may not
    write), into one line on stderr and exit status 1 (`--verbose` logs the traceback too)."""
    try:
        return fn(*args, **kwargs)
    except UlmfitError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _fail("interrupted; finished stages are kept and a re-run continues from them.", 130)
    except OSError as e:
        logging.getLogger("ulmfit").debug("system error", exc_info=True)
        where = f" ({e.filename})" if e.filename else ""
        _fail(f"{e.strerror or e}{where}; check the free space and permissions there, then run the command again "
              "(what finished is kept).")


@app.command()
def langs(all_: bool = typer.Option(False, "--all", help="Also list every Wikipedia served by the generic adapter.")) -> None:
    """List the languages with adapters (tokenizer, case, SentencePiece coverage)."""
    from ulmfit.langs import list_langs

    typer.echo(f"{'code':<12} {'language':<24} {'word tokenizer':<15} {'case':<5} {'sp coverage':<11} adapter")
    for lang in list_langs(include_generic=all_):
        typer.echo(f"{lang.code:<12} {lang.name[:24]:<24} {lang.word_tokenizer or '(sentencepiece)':<15} "
                   f"{'yes' if lang.has_case else 'no':<5} {lang.sp_coverage:<11} "
                   f"{'generic' if lang.generic else 'own'}")


@app.command()
def prepare(
    lang: Optional[str] = typer.Argument(None, help="Wikipedia language code, e.g. vi (default with --sample: en)."),
    dump: Optional[str] = typer.Option(None, help="Dump file (.xml, .bz2, .xz, .gz), its URL, or 'latest'."),
    hf_dataset: Optional[str] = typer.Option(None, "--hf-dataset",
                                             help="A Hub dataset with title/text columns, e.g. wikimedia/wikipedia "
                                                  "(the language's config is chosen), or a local dataset folder."),
    text: Optional[list[Path]] = typer.Option(None, help="Plain-text file or folder; one document per blank-line block."),
    sample: bool = typer.Option(False, "--sample", help="Use the tiny sample dump shipped with the package."),
    out: Optional[Path] = typer.Option(None, help="Corpus directory [default: corpora/LANG-SOURCE-TOKENIZER]."),
    tokenizer: str = typer.Option("sentencepiece", **one_of("sentencepiece", "word", what="tokenizer"),
                                  help="SentencePiece subwords, or words (the language's segmenter)."),
    vocab_size: Optional[int] = typer.Option(None, help="Vocabulary size [default: 15000 sentencepiece, 60000 word]."),
    min_freq: int = typer.Option(3, help="Word level: least count for a word to enter the vocabulary."),
    valid_frac: float = typer.Option(0.05, help="Share of articles (by title hash) in the valid split."),
    max_tokens: Optional[int] = typer.Option(None, help="Cap the train split at about this many tokens, sampling articles."),
    min_chars: int = typer.Option(200, help="Leave out articles shorter than this after cleaning."),
    workers: Optional[int] = typer.Option(None, help="Worker processes [default: all cores]."),
    cache_dir: Optional[Path] = typer.Option(None, help="Where downloaded dumps are kept [default: ~/.cache/ulmfit/dumps]."),
    force_lang: bool = typer.Option(False, "--force-lang", help="Read a dump of another Wikipedia as this language."),
) -> None:
    """Turn a Wikipedia dump (or text) into a training corpus: cleaned text, tokenizer, token ids, meta.json."""
    from ulmfit.pretrain.prepare import PrepareOptions, prepare_corpus
    from ulmfit.spec import model_name

    if lang is None:
        if not sample:
            _fail("give a language code, e.g. `ulmfit prepare vi --dump latest` (or use --sample).")
        lang = "en"
    options = run(PrepareOptions, tokenizer=tokenizer, vocab_size=vocab_size, min_freq=min_freq,
                  valid_frac=valid_frac, max_tokens=max_tokens, min_chars=min_chars)
    if out is None:
        source = "sample" if sample else "text" if text else "hub" if hf_dataset and "wikipedia" not in hf_dataset \
            else "wiki"
        out = Path("corpora") / model_name(lang, source, tokenizer, options.vocab_size)
    meta = run(prepare_corpus, lang, out, dump=dump, hf_dataset=hf_dataset, text=text, sample=sample,
               options=options, workers=workers, cache_dir=cache_dir, force_lang=force_lang)
    typer.echo(f"corpus: {out}")
    typer.echo(f"  language   {meta['lang']} ({meta['lang_name']}){' — generic adapter' if meta['generic_adapter'] else ''}")
    typer.echo(f"  tokenizer  {meta['tokenizer']}, {meta['vocab_size']:,} ids ({meta['dtype']})")
    for split in ("train", "valid"):
        typer.echo(f"  {split:<10} {meta['articles'][split]:,} articles, {meta['tokens'][split]:,} tokens")


@app.command()
def pretrain(
    corpus: Path = typer.Argument(..., help="Corpus directory written by `ulmfit prepare`."),
    out: Path = typer.Option(..., help="Run directory: becomes the model directory."),
    config: str = typer.Option("tiny", help="tiny, small, paper, or a YAML file."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a config key: --set lr=3e-3 (repeatable)."),
    epochs: Optional[int] = typer.Option(None, help="Shortcut for --set epochs=N."),
    direction: str = typer.Option("both", **DIRECTIONS, help="Which language models to train."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    max_minutes: Optional[float] = typer.Option(None, help="Stop cleanly with a checkpoint after this many minutes."),
    checkpoint_minutes: Optional[float] = typer.Option(None, help="Also checkpoint every N minutes within an epoch, "
                                                       "so that a kill loses at most that much (0: only at epoch "
                                                       "ends) [default: 10]."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or cuda:N [default: cuda when there is one]."),
) -> None:
    """Train forward and backward AWD-LSTM language models; write the model directory."""
    from ulmfit.config import load_config
    from ulmfit.pretrain.train import pretrain as train

    overrides = list(set_ or []) + ([f"epochs={epochs}"] if epochs is not None else [])
    cfg = run(load_config, config, overrides)
    every = {} if checkpoint_minutes is None else {"checkpoint_minutes": checkpoint_minutes}
    try:
        results = run(train, corpus, out, cfg, direction=direction, resume=resume, max_minutes=max_minutes,
                      device=device, **every)
    except RuntimeError as e:
        if "out of memory" in str(e).lower():
            _fail("the GPU ran out of memory; lower bs (--set bs=...) or bptt, or use a smaller config.")
        raise
    for d in ("fwd", "bwd"):
        if results.get(d):
            last = results[d][-1]
            ppl, acc = (last[k] if last[k] is not None else float("nan") for k in ("valid_ppl", "accuracy"))
            done = last["epoch"] + 1  # a summary after the epochs' own log lines, which count from 0
            typer.echo(f"{d} model after {done} epoch{'s' if done > 1 else ''}: valid perplexity {ppl:.2f}, "
                       f"accuracy {acc:.4f}, {last['tokens_per_s']:,.0f} tokens/s")
    if results["stopped"] == "interrupted":
        _fail("interrupted; the checkpoint is saved: run the same command with --resume to continue.", 130)
    if results["stopped"]:
        typer.echo("stopped at the time budget; run the same command with --resume to continue.")
        raise typer.Exit(0)
    typer.echo(f"model directory: {out}")


MODEL_HELP = "A model directory, a catalogue name (`ulmfit list`), hf-hub:ORG/NAME[@REVISION], or ORG/NAME."


@app.command()
def generate(
    model: str = typer.Argument(..., help=MODEL_HELP),
    prompt: str = typer.Argument(..., help="Text to continue."),
    words: int = typer.Option(50, help="About how many words to add (tokens for scripts without spaces)."),
    temperature: float = typer.Option(0.8, help="Below 1: safer choices; above 1: more surprising ones."),
    top_k: int = typer.Option(40, help="Sample among the k likeliest tokens (0: all)."),
    seed: Optional[int] = typer.Option(None, help="Seed for a repeatable sample."),
) -> None:
    """Continue a text with the forward language model."""
    from ulmfit.zoo.pretrained import from_pretrained

    lm = run(from_pretrained, model, direction="fwd")
    typer.echo(run(lm.generate, prompt, words=words, temperature=temperature, top_k=top_k, seed=seed))


@app.command("list")
def list_(
    pattern: str = typer.Argument("*", help="Shell-style pattern on names, e.g. 'vi-*'."),
    lang: Optional[str] = typer.Option(None, help="Only models of this language code."),
) -> None:
    """List the named models of the catalogue (built-in and your own)."""
    from ulmfit.zoo.catalogue import list_models, load_catalogue

    names = run(list_models, pattern, lang)
    catalogue = load_catalogue()
    typer.echo(f"{'name':<24} {'lang':<6} {'tokenizer':<18} {'directions':<10} {'valid ppl':<15} source")
    for name in names:
        e = catalogue[name]
        ppl = "/".join(f"{e.metrics[d]['valid_ppl']:.1f}" for d in e.directions
                       if e.metrics.get(d, {}).get("valid_ppl") is not None) or "-"
        source = f"third-party ({e.third_party['format']})" if e.third_party else f"hf-hub:{e.repo_id}"
        typer.echo(f"{name:<24} {e.lang:<6} {e.tokenizer['type'] + ' ' + str(e.tokenizer['vocab_size']):<18} "
                   f"{'+'.join(e.directions):<10} {ppl:<15} {source}")
    if not names:
        typer.echo("(no model matches)")


@app.command()
def info(
    model: str = typer.Argument(..., help=MODEL_HELP),
    revision: Optional[str] = typer.Option(None, help="A branch, tag or commit of a Hub repository."),
) -> None:
    """Show a model: its catalogue entry (repository, pinned revision, hashes), or a model directory's config."""
    import yaml

    from ulmfit.zoo.pretrained import describe_model

    typer.echo(yaml.safe_dump(run(describe_model, model, revision=revision), sort_keys=False,
                              allow_unicode=True).rstrip())


@app.command()
def download(
    model: str = typer.Argument(..., help=MODEL_HELP),
    revision: Optional[str] = typer.Option(None, help="A branch, tag or commit [default: the catalogue's pin]."),
    cache_dir: Optional[Path] = typer.Option(None, help="Cache folder [default: the Hugging Face cache, HF_HOME]."),
    force_download: bool = typer.Option(False, "--force-download", help="Download every file again."),
) -> None:
    """Download a model (and check it) into the cache; print where it is."""
    from ulmfit.zoo.pretrained import resolve_model

    typer.echo(run(resolve_model, model, revision=revision, cache_dir=cache_dir, force_download=force_download))


@app.command("export-fastai")
def export_fastai(
    model: str = typer.Argument(..., help=MODEL_HELP),
    out: Path = typer.Argument(..., help="The folder to write (new, or an earlier export): models/NAME.pth and "
                                         "NAME.pkl, the tokenizer, fastai.json, README.md."),
    name: Optional[str] = typer.Option(None, help="The file stem fastai's pretrained_fnames names [default: the "
                                                  "model's name]."),
    revision: Optional[str] = typer.Option(None, help="A branch, tag or commit of a Hub repository."),
) -> None:
    """Export a language model for plain fastai: language_model_learner(..., pretrained_fnames=[NAME, NAME])."""
    from ulmfit.zoo.fastai_bridge import export_fastai as export, read_manifest

    path = run(export, model, out, name=name, revision=revision)
    manifest = read_manifest(path)
    for direction, fnames in manifest["pretrained_fnames"].items():
        typer.echo(f"{direction}: language_model_learner(dls, AWD_LSTM, path={str(path)!r}, "
                   f"pretrained_fnames={fnames!r}{', backwards=True' if direction == 'bwd' else ''}, config=...)")
    typer.echo(f"the fastai code for this model: {path / 'README.md'}")


@app.command()
def remap(
    model: str = typer.Argument(..., help=MODEL_HELP + " Word-level models only."),
    out: Path = typer.Option(..., help="New model directory, in the task vocabulary."),
    vocab: Optional[Path] = typer.Option(None, help="The task vocabulary: a JSON list of tokens (fastai's order)."),
    texts: Optional[list[Path]] = typer.Option(None, help="Or task text files (UTF-8) to build the vocabulary from."),
    max_vocab: int = typer.Option(60_000, help="With --texts: the largest vocabulary."),
    min_freq: int = typer.Option(2, help="With --texts: the least count for a token to enter the vocabulary."),
) -> None:
    """Move a word-level model into a task vocabulary; new tokens get the mean embedding row."""
    import json

    from ulmfit.pretrain.modeldir import FORMAT
    from ulmfit.zoo.pretrained import open_model
    from ulmfit.zoo.remap import remap_model_dir, task_vocab

    if (vocab is None) == (not texts):
        _fail("give the task vocabulary as --vocab FILE.json or --texts FILE (one of them).")
    lm = run(open_model, model, kind=FORMAT)
    counts = None
    try:
        if vocab is not None:
            itos = json.loads(vocab.read_text(encoding="utf-8"))
            if not isinstance(itos, list) or not all(isinstance(t, str) for t in itos):
                raise ValueError("not a list of strings")
        else:
            lines = [line for f in texts for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
            itos, counts = run(task_vocab, lines, lm.config, max_vocab, min_freq)
    except (OSError, ValueError) as e:
        _fail(f"cannot read the task vocabulary or texts ({e}).")
    coverage = run(remap_model_dir, lm.path, itos, out, counts)
    typer.echo(f"{out}: {coverage}")


@app.command()
def push(
    run_dir: Path = typer.Argument(..., help="A finished model directory (or classifier directory) to publish."),
    repo_id: str = typer.Option(..., "--repo-id", help="The Hub repository, ORG/NAME (created when new)."),
    private: bool = typer.Option(False, "--private", help="Create the repository as private."),
    revision: Optional[str] = typer.Option(None, help="The branch to push to, created from main when new [default: main]."),
    create_pr: bool = typer.Option(False, "--create-pr", help="Open a pull request against main instead of committing."),
    bench_results: Optional[Path] = typer.Option(None, "--bench-results",
                                                 help="A benchmark results.json whose scores go into the model card "
                                                      "(into its metadata only, when the Hub's card is kept)."),
    replace_card: bool = typer.Option(False, "--replace-card", help="Rewrite the model card even if the repository "
                                      "has one [default: keep a card that is already there]."),
    message: Optional[str] = typer.Option(None, "--message", "-m", help="The commit message."),
) -> None:
    """Publish a model directory to the Hugging Face Hub: model card, config, tokenizer, weights (HF_TOKEN)."""
    from ulmfit.zoo.hub import push_model

    result = run(push_model, run_dir, repo_id, private=private, revision=revision, create_pr=create_pr,
                 commit_message=message, bench_results=bench_results, replace_card=replace_card)
    typer.echo(f"pushed {len(result['files'])} files to {result['repo_url']} ({result['revision']}), "
               f"commit {result['commit']}")
    if result["card"] != "written":
        added = ", with the benchmark results added to its metadata" if result["card"] == "merged" else ""
        typer.echo(f"kept the model card already in {repo_id}{added}; pass --replace-card to rewrite it")
    if result["pr_url"]:
        typer.echo(f"pull request: {result['pr_url']}")
    typer.echo(f"pin it by name: ulmfit catalogue add {run_dir} --repo-id {repo_id} --revision {result['commit']}")


catalogue_app = typer.Typer(no_args_is_help=True, help="Your own catalogue of named models (ULMFIT_CATALOGUE).")
app.add_typer(catalogue_app, name="catalogue")


@catalogue_app.command("add")
def catalogue_add(
    model: str = typer.Argument(..., help="The model directory that was pushed, or hf-hub:ORG/NAME."),
    repo_id: str = typer.Option(..., "--repo-id", help="The Hub repository it was pushed to, ORG/NAME."),
    revision: Optional[str] = typer.Option(None, help="The commit (or branch) to pin [default: main's commit now]."),
    name: Optional[str] = typer.Option(None, help="The catalogue name [default: LANG-SOURCE-TOKENIZER, e.g. vi-wiki-sp15k]."),
) -> None:
    """Pin a published model in your catalogue: commit, sha256 of the weights, metrics, licence."""
    from ulmfit.zoo.catalogue import add_entry
    from ulmfit.zoo.pin import catalogue_entry

    entry = run(catalogue_entry, model, repo_id, revision=revision, name=name)
    path = run(add_entry, entry)
    typer.echo(f"added {entry['name']} (hf-hub:{repo_id} at {entry['revision']}) to {path}")


@catalogue_app.command("mirror")
def catalogue_mirror(
    name: str = typer.Argument(..., help="A third-party catalogue name, e.g. en-wt103 (`ulmfit list`)."),
    to: str = typer.Option(..., "--to", help="The Hub user or organisation to publish under: the repository is "
                                             "TO/NAME."),
    repo_name: Optional[str] = typer.Option(None, help="The repository's name [default: the catalogue name]."),
    private: bool = typer.Option(False, "--private", help="Create the repository as private."),
) -> None:
    """Mirror a third-party model on the Hub: download, convert (same logits), push with its card, pin it."""
    from ulmfit.zoo.pin import mirror_entry

    result = run(mirror_entry, name, to, repo_name=repo_name, private=private)
    typer.echo(f"pushed {name} to {result['repo_url']}, commit {result['commit']}")
    typer.echo(f"pinned {name} in {result['catalogue']}: `ulmfit download {name}` now fetches the mirror")


@app.command()
def convert(
    path: Path = typer.Argument(..., help="An older checkpoint: its .tgz/.zip archive, its folder, or its .pth file."),
    to: Path = typer.Option(..., "--to", help="The new model directory (must not exist yet, or be empty)."),
    format_: Optional[str] = typer.Option(None, "--format", **one_of("fastai-wt103", "fastai-ulmfit",
                                                                         "thai2fit", "fastai", what="format"),
                                          help="The checkpoint's format [default: detected; fastai: any word-level "
                                               "fastai learn.save with its vocabulary, needs --lang]."),
    lang: Optional[str] = typer.Option(None, help="Language code [default: from the checkpoint or its format]."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle",
                                      help="Load weights that need arbitrary pickle, which runs code: trusted files only."),
) -> None:
    """Import an older ULMFiT checkpoint (fastai WT103, fastai_ulmfit, thai2fit) as a model directory."""
    from ulmfit.zoo.convert import convert as convert_checkpoint

    typer.echo(run(convert_checkpoint, path, to, format=format_, lang=lang, allow_pickle=allow_pickle))


# Options that finetune and bench share: a task from files or from a Hugging Face dataset, and the run's settings.
HF_DATASET = typer.Option(None, "--hf-dataset", help="A task from a Hugging Face dataset instead of files: "
                          "NAME or ORG/NAME[:CONFIG] on the Hub, or a folder that `datasets` saved (save_to_disk) "
                          "or that holds its parquet/CSV/JSON files.")
TRAIN_SPLIT = typer.Option("train", help="With --hf-dataset: the training split.")
TEST_SPLIT = typer.Option(None, help="With --hf-dataset: the test split [default: test, else 10% of train].")
VALID_SPLIT = typer.Option(None, help="With --hf-dataset: the valid split [default: validation, valid or dev, "
                                      "else 10% of train].")
TEXT_COL = typer.Option("text", help="The text column (of --train's files, or of --hf-dataset).")
LABEL_COL = typer.Option("label", help="The label column (of --train's files, or of --hf-dataset).")
TASK_NAME = typer.Option(None, "--name", help="The task's name, as the classifier's card shows its dataset "
                                              "[default: the dataset's, or the training file's without 'train'].")
CONFIG = typer.Option(None, help="Fine-tuning config: tiny (a few short cycles), paper (fastai's ULMFiT recipe), or "
                                 "a YAML file [default: paper on a GPU, tiny on a CPU].")
SET = typer.Option(None, "--set", help="Override a config key: --set clas_bs=32 (repeatable).")
DEVICE = typer.Option(None, help="cpu, cuda or cuda:N [default: cuda when there is one].")


def _config(name: Optional[str], overrides: list[str], device: Optional[str]):
    """The fine-tuning config, chosen by the device when none is named, saying which."""
    from ulmfit.benchmarks.finetune import config_for_device, load_finetune_config

    name, why = run(config_for_device, name, device)
    if why:
        typer.echo(f"config: {name} ({why})")
    return name, run(load_finetune_config, name, overrides)


@app.command()
def finetune(
    out: Path = typer.Option(..., help="The classifier directory to write (must not exist yet, or be empty)."),
    train: Optional[Path] = typer.Option(None, help="Training data: a CSV, TSV or JSON-lines file with text and "
                                                    "label columns (or --hf-dataset)."),
    hf_dataset: Optional[str] = HF_DATASET,
    lm: Optional[str] = typer.Option(None, "--lm", help=MODEL_HELP + " Leave out only with --no-pretrain: a "
                                     "word-level model is then built from the task's text alone."),
    valid: Optional[Path] = typer.Option(None, help="Valid split [default: 10% of train, seed 0]."),
    test: Optional[Path] = typer.Option(None, help="Test split, scored at the end [default: 10% of train, seed 0]."),
    train_split: str = TRAIN_SPLIT,
    test_split: Optional[str] = TEST_SPLIT,
    valid_split: Optional[str] = VALID_SPLIT,
    text_col: str = TEXT_COL,
    label_col: str = LABEL_COL,
    name: Optional[str] = TASK_NAME,
    multi_label: bool = typer.Option(False, "--multi-label", help="Each label cell lists labels split by --label-sep."),
    label_sep: str = typer.Option("|", help="With --multi-label: the separator between labels."),
    encoding: str = typer.Option("utf-8", help="The text encoding of the files, e.g. latin-1 or cp1252."),
    max_tokens_per_text: Optional[int] = typer.Option(None, help="Read the first N tokens of a longer text "
                                                      "[default: 5000]; shortcut for --set max_tokens_per_text=N."),
    lang: Optional[str] = typer.Option(None, help="Language code of the texts [default: the language model's]."),
    config: Optional[str] = CONFIG,
    set_: Optional[list[str]] = SET,
    no_pretrain: bool = typer.Option(False, "--no-pretrain", help="The same stages from random weights: the "
                                     "ablation that measures what pretraining brings."),
    direction: str = typer.Option("both", **DIRECTIONS, help="Which classifiers to train (both: averaged)."),
    device: Optional[str] = DEVICE,
) -> None:
    """Fine-tune a language model on a task's text and train forward and backward classifiers (ULMFiT)."""
    from ulmfit.benchmarks.classifier import Classifier
    from ulmfit.benchmarks.finetune import finetune as train_classifier
    from ulmfit.benchmarks.finetune import open_lm
    from ulmfit.benchmarks.tasks import user_task

    if lang is None:
        if lm is None:
            _fail("give the texts' language with --lang (there is no --lm to take it from).")
        lm = run(open_lm, lm)
        lang = lm.lang
    overrides = list(set_ or [])
    if max_tokens_per_text is not None:
        overrides.append(f"max_tokens_per_text={max_tokens_per_text}")
    _, cfg = _config(config, overrides, device)
    task = run(user_task, lang=lang, train=train, test=test, valid=valid, hf_dataset=hf_dataset,
               train_split=train_split, test_split=test_split, valid_split=valid_split, text_col=text_col,
               label_col=label_col, name=name, multi_label=multi_label, label_sep=label_sep, encoding=encoding)
    data = run(task.load)
    path = run(train_classifier, lm, data, out, cfg, directions=direction, pretrained=not no_pretrain, device=device)
    clf = run(Classifier.from_pretrained, path)
    for variant, scores in clf.config["metrics"].items():
        typer.echo(f"valid {variant:<8} accuracy {scores['accuracy']:.4f}  macro F1 {scores['macro_f1']:.4f}")
    if data.test is not None and len(data.test):
        scores = run(clf.evaluate, data.test, record=True, dataset={
            "dataset_name": task.name, "dataset_type": task.hf_dataset or task.id.split("/", 1)[-1],
            "task_name": task.name})["ensemble"]
        typer.echo(f"test  ensemble accuracy {scores['accuracy']:.4f}  macro F1 {scores['macro_f1']:.4f} "
                   f"({len(data.test):,} texts)")
    typer.echo(f"classifier directory: {path}")


@app.command()
def predict(
    classifier: str = typer.Argument(..., help="A classifier directory (ulmfit finetune), or ORG/NAME on the Hub."),
    texts: Optional[list[str]] = typer.Argument(None, help="Texts to classify."),
    file: Optional[Path] = typer.Option(None, "--file", help="A CSV file to classify instead (needs --out)."),
    out: Optional[Path] = typer.Option(None, help="With --file: the CSV to write: the input's columns, "
                                       "prob_LABEL per class, prediction."),
    text_col: str = typer.Option("text", help="With --file: the text column."),
    encoding: str = typer.Option("utf-8", help="With --file: its text encoding, e.g. latin-1 or cp1252."),
    max_tokens_per_text: Optional[int] = typer.Option(None, help="Read the first N tokens of a longer text "
                                                      "[default: what the classifier was trained with, or 5000]."),
    direction: str = typer.Option("ensemble", **one_of("ensemble", "fwd", "bwd", what="direction"),
                                  help="ensemble: the mean of both directions' probabilities."),
    threshold: float = typer.Option(0.5, help="Multi-label: the probability from which a label is predicted."),
    bs: int = typer.Option(64, help="Texts per batch."),
) -> None:
    """Classify texts with a fine-tuned classifier: the label and every class probability."""
    from ulmfit.benchmarks.classifier import Classifier, predict_csv

    if (file is None) == (not texts):
        _fail("give texts to classify, or --file FILE.csv --out OUT.csv (one of them).")
    if file is not None and out is None:
        _fail("--file needs --out, the CSV to write the predictions to.")
    clf = run(Classifier.from_pretrained, classifier, max_tokens=max_tokens_per_text)
    if file is not None:
        counts = run(predict_csv, clf, file, out, text_col=text_col, direction=direction, threshold=threshold, bs=bs,
                     encoding=encoding)
        skipped = f", {counts['empty']:,} empty rows skipped" if counts["empty"] else ""
        typer.echo(f"{out}: {counts['predicted']:,} rows classified{skipped}")
        return
    probs = run(clf.predict_proba, texts, direction=direction, bs=bs)
    for text, row, chosen in zip(texts, probs, clf.decide(probs, threshold)):
        label = ("|".join(chosen) or "-") if clf.multi_label else chosen
        shown = " ".join(f"{lab}={p:.3f}" for lab, p in zip(clf.labels, row))
        excerpt = text if len(text) <= 60 else text[:57] + "..."
        typer.echo(f"{label}\t{shown}\t{excerpt}")


@app.command()
def tasks(lang: Optional[str] = typer.Option(None, help="Only tasks of this language code.")) -> None:
    """List the registered benchmark tasks: splits, metric, published figures."""
    from ulmfit.benchmarks.tasks import list_tasks

    typer.echo(f"{'task':<22} {'metric':<9} {'ULMFiT':>7} {'best':>7}  name")
    for task in list_tasks(lang):
        ulmfit_ = f"{100 * task.published_ulmfit.value:.2f}" if task.published_ulmfit else "-"
        best = f"{100 * task.published_best.value:.2f}" if task.published_best else "-"
        typer.echo(f"{task.id:<22} {task.metric:<9} {ulmfit_:>7} {best:>7}  {task.name}")


@app.command()
def bench(
    out: Path = typer.Option(..., help="Folder for results.json/.csv/.md, the learning curves and the classifiers."),
    tasks_: Optional[str] = typer.Option(None, "--tasks", help="Comma-separated task ids (`ulmfit tasks`)."),
    task_file: Optional[list[Path]] = typer.Option(None, "--task-file", help="A YAML task spec (repeatable)."),
    train: Optional[Path] = typer.Option(None, help="A task from files: the training CSV/TSV/JSONL (needs --lang)."),
    test: Optional[Path] = typer.Option(None, help="With --train: the test file [default: 10% of train]."),
    valid: Optional[Path] = typer.Option(None, help="With --train: the valid file [default: 10% of train]."),
    hf_dataset: Optional[str] = HF_DATASET,
    train_split: str = TRAIN_SPLIT,
    test_split: Optional[str] = TEST_SPLIT,
    valid_split: Optional[str] = VALID_SPLIT,
    lang: Optional[str] = typer.Option(None, help="With --train or --hf-dataset: the language code of the texts."),
    text_col: str = TEXT_COL,
    label_col: str = LABEL_COL,
    name: Optional[str] = TASK_NAME,
    encoding: str = typer.Option("utf-8", help="With --train: the text encoding of the files, e.g. latin-1."),
    lm: Optional[list[str]] = typer.Option(None, "--lm", help=MODEL_HELP + " One for every task, or LANG=MODEL "
                                           "per language (repeatable). Leave out only with --no-pretrain."),
    config: Optional[str] = CONFIG,
    set_: Optional[list[str]] = SET,
    epochs: Optional[int] = typer.Option(None, help="Shortcut: LM fine-tuning epochs, and epochs of the last "
                                         "(fully unfrozen) classifier step."),
    labels_limit: Optional[int] = typer.Option(None, help="Train each classifier on this many labelled examples "
                                               "(stratified; the rest still serve LM fine-tuning)."),
    no_pretrain: bool = typer.Option(False, "--no-pretrain", help="Start from random weights: what pretraining "
                                     "brings is the difference from a run without this flag."),
    direction: str = typer.Option("both", **DIRECTIONS, help="Which classifiers to train (both: averaged)."),
    push_to: Optional[str] = typer.Option(None, "--push-to", help="Publish each classifier to the Hub under this "
                                          "user or organisation, as ORG/TASK-ulmfit, with its card (HF_TOKEN)."),
    data_dir: Optional[Path] = typer.Option(None, help="Folder with the tasks' files [default: $ULMFIT_DATA, "
                                            "~/.cache/ulmfit/data]."),
    device: Optional[str] = DEVICE,
) -> None:
    """Run the ULMFiT recipe on benchmark tasks and write a results table next to published figures."""
    from ulmfit.benchmarks.bench import BenchSettings, markdown_table, run_bench
    from ulmfit.benchmarks.finetune import load_finetune_config
    from ulmfit.benchmarks.tasks import get_task, task_from_file, user_task

    chosen = [run(get_task, t) for t in (tasks_ or "").split(",") if t.strip()]
    chosen += [run(task_from_file, f) for f in task_file or []]
    if train is not None or hf_dataset is not None:
        if lang is None:
            _fail(f"a task from {'--train' if train is not None else '--hf-dataset'} needs the texts' language: "
                  "add --lang CODE.")
        chosen.append(run(user_task, lang=lang, train=train, test=test, valid=valid, hf_dataset=hf_dataset,
                          train_split=train_split, test_split=test_split, valid_split=valid_split,
                          text_col=text_col, label_col=label_col, name=name, encoding=encoding))
    if not chosen:
        _fail("name the tasks: --tasks en/trec6,th/wisesight (see `ulmfit tasks`), --task-file, --train or "
              "--hf-dataset.")
    overrides = list(set_ or [])
    config, cfg = _config(config, overrides, device)
    if epochs is not None:
        overrides += [f"lm_epochs={epochs}", "clas_epochs=" + ",".join(map(str, [*cfg.clas_epochs[:-1], epochs]))]
        cfg = run(load_finetune_config, config, overrides)
    lms = {}
    for item in lm or []:
        lang_, sep, spec = item.partition("=")
        lms["*" if not sep else lang_.strip()] = spec if sep else item
    settings = BenchSettings(lms=lms, config=cfg, pretrained=not no_pretrain, labels_limit=labels_limit,
                             directions=("fwd", "bwd") if direction == "both" else (direction,))
    rows = run(run_bench, chosen, settings, out, data_dir=data_dir, device=device, push_to=push_to)
    typer.echo(markdown_table(rows, settings))
    typer.echo(f"\nresults: {out / 'results.md'} (.json, .csv), learning curves: {out / 'learning_curves.png'}")
    for row in rows:
        if row.get("hub"):
            typer.echo(f"{row['task']}: hf-hub:{row['hub']}")


if __name__ == "__main__":
    app()
