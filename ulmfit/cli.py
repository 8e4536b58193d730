"""The `ulmfit` command: thin wrappers over the package's functions. Only this module prints."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from ulmfit.errors import UlmfitError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Multilingual ULMFiT: pretrain AWD-LSTM language models from Wikipedia and use them.")


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debugging detail."),
         quiet: bool = typer.Option(False, "--quiet", "-q", help="Log warnings and errors only.")) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s" if level == logging.INFO else "%(levelname)s %(name)s: %(message)s")
    logging.getLogger("ulmfit").setLevel(level)


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def run(fn, *args, **kwargs):
    """Call a package function; turn its `UlmfitError` into one line on stderr and exit status 1."""
    try:
        return fn(*args, **kwargs)
    except UlmfitError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _fail("interrupted; finished stages are kept and a re-run continues from them.", 130)


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
    tokenizer: str = typer.Option("sentencepiece", help="sentencepiece or word."),
    vocab_size: Optional[int] = typer.Option(None, help="Vocabulary size [default: 15000 sentencepiece, 60000 word]."),
    min_freq: int = typer.Option(3, help="Word level: least count for a word to enter the vocabulary."),
    valid_frac: float = typer.Option(0.05, help="Share of articles (by title hash) in the valid split."),
    max_tokens: Optional[int] = typer.Option(None, help="Cap the train split at about this many tokens, sampling articles."),
    min_chars: int = typer.Option(200, help="Leave out articles shorter than this after cleaning."),
    workers: Optional[int] = typer.Option(None, help="Worker processes [default: all cores]."),
    cache_dir: Optional[Path] = typer.Option(None, help="Where downloaded dumps are kept [default: ~/.cache/ulmfit/dumps]."),
) -> None:
    """Turn a Wikipedia dump (or text) into a training corpus: cleaned text, tokenizer, token ids, meta.json."""
    from ulmfit.pretrain.corpus import PrepareOptions, prepare_corpus

    if lang is None:
        if not sample:
            _fail("give a language code, e.g. `ulmfit prepare vi --dump latest` (or use --sample).")
        lang = "en"
    options = run(PrepareOptions, tokenizer=tokenizer, vocab_size=vocab_size, min_freq=min_freq,
                  valid_frac=valid_frac, max_tokens=max_tokens, min_chars=min_chars)
    if out is None:
        source = "sample" if sample else "text" if text else "wiki"
        tok = f"sp{options.vocab_size // 1000}k" if tokenizer == "sentencepiece" else f"word{options.vocab_size // 1000}k"
        out = Path("corpora") / f"{lang}-{source}-{tok}"
    meta = run(prepare_corpus, lang, out, dump=dump, hf_dataset=hf_dataset, text=text, sample=sample,
               options=options, workers=workers, cache_dir=cache_dir)
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
    direction: str = typer.Option("both", help="fwd, bwd or both."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    max_minutes: Optional[float] = typer.Option(None, help="Stop cleanly with a checkpoint after this many minutes."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or cuda:N [default: cuda when there is one]."),
) -> None:
    """Train forward and backward AWD-LSTM language models; write the model directory."""
    from ulmfit.config import load_config
    from ulmfit.pretrain.train import pretrain as train

    overrides = list(set_ or []) + ([f"epochs={epochs}"] if epochs is not None else [])
    cfg = run(load_config, config, overrides)
    try:
        results = run(train, corpus, out, cfg, direction=direction, resume=resume, max_minutes=max_minutes,
                      device=device)
    except RuntimeError as e:
        if "out of memory" in str(e).lower():
            _fail("the GPU ran out of memory; lower bs (--set bs=...) or bptt, or use a smaller config.")
        raise
    for d in ("fwd", "bwd"):
        if results.get(d):
            last = results[d][-1]
            typer.echo(f"{d}: epoch {last['epoch'] + 1}, valid perplexity {last['valid_ppl']:.2f}, "
                       f"accuracy {last['accuracy']:.4f}, {last['tokens_per_s']:,.0f} tokens/s")
    if results["stopped"] == "interrupted":
        _fail("interrupted; the checkpoint is saved: run the same command with --resume to continue.", 130)
    if results["stopped"]:
        typer.echo("stopped at the time budget; run the same command with --resume to continue.")
        raise typer.Exit(0)
    typer.echo(f"model directory: {out}")


MODEL_HELP = "A catalogue name (`ulmfit list`), hf-hub:ORG/NAME[@REVISION], or a model directory."


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

    lm = run(from_pretrained, model, "fwd")
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
) -> None:
    """Download a model (and check it) into the cache; print where it is."""
    from ulmfit.zoo.pretrained import resolve_model

    typer.echo(run(resolve_model, model, revision=revision, cache_dir=cache_dir))


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

    from ulmfit.pretrain.modeldir import read_config
    from ulmfit.zoo.pretrained import resolve_model
    from ulmfit.zoo.remap import remap_model_dir, task_vocab

    if (vocab is None) == (not texts):
        _fail("give the task vocabulary as --vocab FILE.json or --texts FILE (one of them).")
    path = run(resolve_model, model)
    counts = None
    try:
        if vocab is not None:
            itos = json.loads(vocab.read_text(encoding="utf-8"))
            if not isinstance(itos, list) or not all(isinstance(t, str) for t in itos):
                raise ValueError("not a list of strings")
        else:
            lines = [line for f in texts for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
            itos, counts = run(task_vocab, lines, run(read_config, path), max_vocab, min_freq)
    except (OSError, ValueError) as e:
        _fail(f"cannot read the task vocabulary or texts ({e}).")
    coverage = run(remap_model_dir, path, itos, out, counts)
    typer.echo(f"{out}: {coverage}")

if __name__ == "__main__":
    app()
