"""Fine-tuning benchmark: what the ULMFiT recipe of `ulmfit bench` reaches on English tasks on this CPU, what
pretraining brings, and the same recipe through the stock fastai pipeline in the same run.

The language model: a small SentencePiece AWD-LSTM pretrained here on the English text in `../shared/data` (the
Wikipedia dump excerpt, cleaned by `ulmfit prepare`, plus WikiText-2's valid and test text, detokenized), or
`--lm DIR`. Then, for every task:

- `ulmfit` rows: `run_bench` (stage 2 LM fine-tuning, stage 3 gradual unfreezing; forward, backward and their
  ensemble scored on the test split) with the pretrained LM and with `--no-pretrain` (same architecture and
  tokenizer, random weights: the ULMFiT paper's ablation), each with all training labels and with
  `--labels-limit` examples (default 100; stratified, the other training texts still serve LM fine-tuning).
- `fastai` rows: the forward model through fastai's own pipeline on the same data, the same pretrained weights
  and tokenizer, the same recipe (epochs, learning rates, batch sizes, dropouts, unfreezing steps):
  `TextBlock.from_df` with fastai's `SentencePieceTokenizer` on the LM's `spm.model`, the LM exported by
  `ulmfit export-fastai` into `language_model_learner(pretrained_fnames=...)` (fastai's `load_pretrained` and
  `match_embeds`) + `fit_one_cycle`, `save_encoder`, `text_classifier_learner` +
  `load_encoder` + `freeze_to`/`unfreeze` steps, test predictions with `get_preds`. Its LM-valid split is fastai's
  seeded `RandomSplitter`, ours the same share by a seeded shuffle; both read the same texts.

Figures per row: the test metric (fwd, bwd, ensemble; fastai: fwd), training seconds (data preparation, both
stages and scoring, wall time), n_train. Run from the repository root (about an hour on 2 CPU cores):

    python benchmarks/finetune_bench.py [--lm DIR] [--tasks en/trec6,en/imdb-sample] [--labels-limit 100]
        [--finetune-config tiny] [--set key=value] [--pretrain-epochs 5] [--work DIR]
        [--out benchmarks/results/bench_cpu_en.json]
"""
from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import logging
import lzma
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

from ulmfit.benchmarks.bench import BenchSettings, run_bench
from ulmfit.benchmarks.data import ClassificationData
from environment import code_version, machine_info  # beside this script
from ulmfit.benchmarks.finetune import FinetuneConfig, load_finetune_config
from ulmfit.benchmarks.tasks import get_task, limit_labels
from ulmfit.config import load_config
from ulmfit.pretrain.modeldir import ModelDir
from ulmfit.pretrain.prepare import PrepareOptions, prepare_corpus
from ulmfit.pretrain.train import pretrain
from ulmfit.zoo.fastai_bridge import export_fastai

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
DUMP = SHARED / "en/wikipedia_xml/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
WIKITEXT = [SHARED / f"en/wikitext-2/{split}.txt.xz" for split in ("valid", "test")]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "bench_cpu_en.json"


# --- the language model ------------------------------------------------------------------------------------------

def wikitext_documents(path: Path) -> list[str]:
    """WikiText articles (split at top-level `= Title =` headings), with its tokenization undone where it is
    mechanical (`@-@`, `@,@`, `@.@`, section heading marks) and its `<unk>` markers dropped."""
    docs, current = [], []
    for line in lzma.open(path, "rt", encoding="utf-8"):
        line = line.strip()
        if not line:
            continue
        if re.fullmatch(r"= [^=].* =", line):
            if current:
                docs.append("\n".join(current))
            current = [line.strip("= ")]
            continue
        line = re.sub(r"^(= )+(.*?)( =)+$", r"\2", line)
        line = line.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
        current.append(re.sub(r" ?<unk> ?", " ", line).strip())
    if current:
        docs.append("\n".join(current))
    return docs


def build_lm(work: Path, vocab_size: int, config: str, epochs: int) -> Path:
    """Pretrain the benchmark's English LM (forward and backward) from the shared data; reused when present."""
    lm = work / "lm"
    if (lm / "config.json").is_file():
        return lm
    dump_corpus = work / "dump-corpus"
    prepare_corpus("en", dump_corpus, dump=str(DUMP), options=PrepareOptions(vocab_size=vocab_size), workers=2)
    text = work / "lm-text.txt"
    with text.open("w", encoding="utf-8") as f:
        for split in ("train", "valid"):
            with gzip.open(dump_corpus / "text" / f"{split}.txt.gz", "rt", encoding="utf-8") as g:
                f.write(g.read().strip() + "\n\n")
        for path in WIKITEXT:
            f.write("\n\n".join(wikitext_documents(path)) + "\n\n")
    corpus = work / "corpus"
    prepare_corpus("en", corpus, text=[text], options=PrepareOptions(vocab_size=vocab_size), workers=2)
    pretrain(corpus, lm, load_config(config, {"epochs": epochs, "bs": 32, "bptt": 70}), direction="both")
    return lm


# --- the stock fastai pipeline -----------------------------------------------------------------------------------

def fastai_ulmfit(lm_dir: Path, data: ClassificationData, cfg: FinetuneConfig, metric: str, work: Path) -> dict:
    """The forward ULMFiT classifier through fastai's own data pipeline and learners; the test metric and time."""
    import pandas as pd
    from fastai.text.all import (
        AWD_LSTM, CategoryBlock, ColReader, ColSplitter, DataBlock, Perplexity, RandomSplitter,
        SentencePieceTokenizer, TextBlock, accuracy, awd_lstm_clas_config, language_model_learner,
        text_classifier_learner)

    from ulmfit.benchmarks.classifier import scores, targets_array
    from ulmfit.langs.rules import RULES

    start = time.perf_counter()
    lm = ModelDir.open(lm_dir)
    config = lm.config
    # the pretrained weights and vocabulary as fastai's language_model_learner loads them (`ulmfit export-fastai`)
    export_fastai(lm, work, name="pretrained")
    # fastai's SentencePiece tokenizer on the LM's own model, after the rules the LM was pretrained with
    sp = SentencePieceTokenizer(lang=config["lang"], sp_model=lm_dir / config["tokenizer"]["file"], cache_dir=work)
    rules = [RULES[r] for r in config["tokenizer"]["rules"]]
    texts = [*data.train.texts, *(data.valid.texts if data.valid else []), *data.test.texts, *data.unlabelled]
    lm_block = TextBlock.from_df("text", is_lm=True, tok=sp, rules=rules, min_freq=1, seq_len=cfg.lm_bptt)
    dls_lm = DataBlock(blocks=lm_block, get_x=ColReader("text"),
                       splitter=RandomSplitter(cfg.lm_valid_frac, seed=cfg.seed)).dataloaders(
        pd.DataFrame({"text": texts}), path=work, bs=cfg.lm_bs, seq_len=cfg.lm_bptt)
    arch = dict(config["arch"])
    learn = language_model_learner(dls_lm, AWD_LSTM, config=arch, drop_mult=cfg.lm_drop_mult,
                                   pretrained_fnames=["pretrained", "pretrained"], metrics=[accuracy, Perplexity()],
                                   path=work, wd=cfg.wd, moms=cfg.moms)
    with learn.no_bar():
        learn.fit_one_cycle(cfg.lm_epochs_frozen, cfg.lm_lr_frozen)
        learn.unfreeze()
        learn.fit_one_cycle(cfg.lm_epochs, cfg.lm_lr)
        lm_ppl = float(learn.validate()[2])
    learn.save_encoder("finetuned")

    valid = data.valid
    frame = pd.DataFrame({"text": [*data.train.texts, *valid.texts], "label": [*data.train.labels, *valid.labels],
                          "is_valid": [False] * len(data.train) + [True] * len(valid)})
    blocks = (TextBlock.from_df("text", vocab=dls_lm.vocab, tok=sp, rules=rules, seq_len=cfg.clas_bptt),
              CategoryBlock(vocab=data.labels))  # the task's label order: probability columns line up
    dls = DataBlock(blocks=blocks, get_x=ColReader("text"), get_y=ColReader("label"),
                    splitter=ColSplitter("is_valid")).dataloaders(frame, path=work, bs=cfg.clas_bs,
                                                                   seq_len=cfg.clas_bptt)
    sizes = {k: arch[k] for k in ("emb_sz", "n_hid", "n_layers", "pad_token", "bidir")}
    learn = text_classifier_learner(dls, AWD_LSTM, seq_len=cfg.clas_bptt, config=awd_lstm_clas_config | sizes,
                                    drop_mult=cfg.clas_drop_mult, pretrained=False, max_len=cfg.clas_max_len,
                                    metrics=accuracy, path=work, wd=cfg.wd, moms=cfg.moms)
    learn.load_encoder("finetuned")
    steps = len(cfg.clas_lrs)
    with learn.no_bar():
        for i, (lr, epochs) in enumerate(zip(cfg.clas_lrs, cfg.clas_epochs)):
            if i == steps - 1:
                learn.unfreeze()
            else:
                learn.freeze_to(-(i + 1))
            learn.fit_one_cycle(epochs, lr if i == 0 else slice(lr / cfg.lr_decay ** 4, lr))
        probs, _ = learn.get_preds(dl=dls.test_dl(pd.DataFrame({"text": data.test.texts})))
    score = scores(targets_array(data.test.labels, data.labels, False), probs.numpy(), False)[metric]
    return {"fwd": round(score, 4), "lm_valid_ppl": round(lm_ppl, 2),
            "seconds": round(time.perf_counter() - start, 1)}


# --- the run -----------------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lm", type=Path, help="a pretrained model directory [default: pretrain one here]")
    parser.add_argument("--tasks", default="en/trec6,en/imdb-sample")
    parser.add_argument("--labels-limit", type=int, default=100)
    parser.add_argument("--finetune-config", default="tiny")
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="finetune config key=value")
    parser.add_argument("--pretrain-config", default="tiny")
    parser.add_argument("--pretrain-epochs", type=int, default=5)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--no-fastai", action="store_true", help="leave out the stock fastai rows")
    parser.add_argument("--work", type=Path, help="working folder [default: a temporary one]")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(2)
    started = dt.datetime.now(dt.timezone.utc)
    work = args.work or Path(tempfile.mkdtemp(prefix="finetune-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    lm = args.lm or build_lm(work, args.vocab_size, args.pretrain_config, args.pretrain_epochs)
    cfg = load_finetune_config(args.finetune_config, args.overrides)
    tasks = [get_task(t) for t in args.tasks.split(",")]
    runs = []
    for pretrained in (True, False):
        for limit in (None, args.labels_limit):
            settings = BenchSettings(lms={"en": str(lm)}, config=cfg, pretrained=pretrained, labels_limit=limit)
            name = f"bench-{'pretrained' if pretrained else 'no-pretrain'}-{limit or 'all'}"
            print(f"== {name}", flush=True)
            for row in run_bench(tasks, settings, work / name, data_dir=SHARED):
                runs.append({"pipeline": "ulmfit", "pretrained": pretrained, "labels_limit": limit} | row)
    if not args.no_fastai:
        for task in tasks:
            full = task.load(SHARED)
            for limit in (None, args.labels_limit):
                data = limit_labels(full, limit) if limit else full
                print(f"== fastai {task.id} {limit or 'all'}", flush=True)
                result = fastai_ulmfit(Path(lm), data, cfg, task.metric, work / f"fastai-{task.id.replace('/', '-')}"
                                       f"-{limit or 'all'}")
                runs.append({"pipeline": "fastai", "pretrained": True, "labels_limit": limit, "task": task.id,
                             "lang": task.lang, "n_train": len(data.train), "n_test": len(data.test),
                             "metric": task.metric} | result)
    lm_dir = ModelDir.open(lm)
    lm_config, lm_history = lm_dir.config, lm_dir.metrics()
    report = {
        "machine": machine_info(), "device": "cpu", "date": started.date().isoformat(),
        "started": started.isoformat(timespec="seconds"), "code": code_version(),
        "lm": {"path": str(lm), "arch": lm_config["arch"], "vocab_size": lm_config["vocab_size"],
               "tokenizer": lm_config["tokenizer"]["type"], "corpus": lm_config.get("corpus"),
               "metrics": lm_config.get("metrics"),
               "train_seconds": {d: round(sum(e["train_seconds"] for e in rows), 1) for d, rows in lm_history.items()},
               "valid_ppl_by_epoch": {d: [e["valid_ppl"] for e in rows] for d, rows in lm_history.items()}},
        "finetune_config": cfg.to_dict(),
        "notes": {
            "metric": "each task's metric on its test split (accuracy for these), 0-1 scale; fwd/bwd: one "
                      "direction's classifier, ensemble: the mean of their probabilities",
            "seconds": "wall time per task: loading, LM fine-tuning, classifier training (both directions for "
                       "ulmfit, forward only for fastai) and scoring",
            "pretrained": "false: the same architecture, tokenizer and stages from random weights",
            "labels_limit": "null: every training example; N: a stratified sample of N (seed 0), the rest of the "
                            "training texts still read by LM fine-tuning",
            "fastai": "fastai 2.8's DataBlock/TextBlock.from_df (SentencePieceTokenizer on the LM's spm.model, the "
                      "LM's rules, vocabulary of every piece the task text has: min_freq=1) + language_model_learner"
                      "/load_pretrained (match_embeds) + text_classifier_learner/load_encoder; the same recipe, "
                      "weights and batch sizes; forward direction only",
        },
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps([{k: r.get(k) for k in ("pipeline", "task", "pretrained", "labels_limit", "fwd", "bwd",
                                              "ensemble", "seconds")} for r in runs], indent=1))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
