"""Corpus tokenizers: a SentencePiece unigram model or a word vocabulary, and the encoders that turn text into ids.

Both reserve ids 0-8 for fastai's special tokens in fastai's order (`xxunk`, `xxpad`, `xxbos`, `xxeos`, `xxfld`,
`xxrep`, `xxwrep`, `xxup`, `xxmaj`), so ids, fastai vocabularies and `match_embeds` agree.
"""
from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np
import sentencepiece as spm

from ulmfit.errors import UlmfitError
from ulmfit.files import atomic_write_text
from ulmfit.langs import Language
from ulmfit.langs.rules import SPECIAL_TOKENS, make_preprocessor

log = logging.getLogger(__name__)

UNK, PAD, BOS, EOS = 0, 1, 2, 3  # the ids of SPECIAL_TOKENS[:4]
SP_MODEL = "spm.model"
WORD_VOCAB = "vocab.json"


def train_sentencepiece(lines: Iterable[str], model_dir: Path, vocab_size: int, coverage: float,
                        threads: int) -> Path:
    """Train a unigram model on all of `lines` (already preprocessed, already sampled), write
    `model_dir/spm.model`.

    The vocabulary size is a ceiling (`hard_vocab_limit=false`): a small corpus gets the vocabulary it can fill.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_prefix=str(model_dir / "spm"),
            model_type="unigram",
            vocab_size=vocab_size,
            hard_vocab_limit=False,
            character_coverage=coverage,
            # SentencePiece's default seeds 1M candidate pieces. 5× the vocabulary trains faster and compresses
            # held-out text as well or better: chars per token 1.745 / 3.962 / 3.778 on the valid splits of the ja,
            # uk and vi excerpts, 4.248 on IMDb test reviews after 20M characters of train reviews, against 1.736 /
            # 3.911 / 3.778 / 4.233 with 10× (and 20-30 % more CPU); 3× compresses IMDb worse.
            seed_sentencepiece_size=max(5 * vocab_size, 10_000),
            # One EM sub-iteration per pruning step and pruning to 60 % (defaults 2 and 75 %): about half the CPU
            # time, with as good a compression of held-out text (chars per token on the valid split of the uk, ja
            # and vi excerpts: 3.914 / 1.735 / 3.778 against 3.912 / 1.730 / 3.777 with the defaults).
            num_sub_iterations=1,
            shrinking_factor=0.6,
            shuffle_input_sentence=True,
            max_sentence_length=1 << 16,
            num_threads=threads,
            unk_id=UNK, unk_piece="xxunk",
            pad_id=PAD, pad_piece="xxpad",
            bos_id=BOS, bos_piece="xxbos",
            eos_id=EOS, eos_piece="xxeos",
            user_defined_symbols=SPECIAL_TOKENS[4:],
            minloglevel=2,
        )
    except RuntimeError as e:
        raise UlmfitError(f"SentencePiece could not train on this corpus ({e}); the corpus may be too small.") from e
    (model_dir / "spm.vocab").unlink(missing_ok=True)  # the same pieces are in spm.model
    try:
        load_sentencepiece(model_dir / SP_MODEL)
    except UlmfitError:  # the trainer says nothing when it could not write the whole file
        raise UlmfitError(f"SentencePiece's trainer could not write {model_dir / SP_MODEL} whole: is the disk full? "
                          "Free some space and run the command again.") from None
    return model_dir / SP_MODEL


def build_word_vocab(counts: Counter, max_vocab: int, min_freq: int) -> list[str]:
    """fastai's `make_vocab`, written here because importing fastai imports torch (4 CPU seconds): special tokens
    first, then the tokens seen at least `min_freq` times, most frequent first (ties in first-seen order, as
    `Counter.most_common`), cut at `max_vocab`, then "xxfake" up to the next multiple of 8 (a whole 8 when the
    length is one already, as fastai does). `tests/pretrain/test_tokenizer.py` checks it against fastai's."""
    special = set(SPECIAL_TOKENS)
    vocab = [t for t, c in counts.most_common(max_vocab) if c >= min_freq and t not in special]
    vocab = (SPECIAL_TOKENS + vocab)[:max_vocab]
    return vocab + ["xxfake"] * (8 - len(vocab) % 8)


def load_sentencepiece(path: Path) -> spm.SentencePieceProcessor:
    """A SentencePiece model file, or a one-sentence error when it cannot be read (damaged, cut short)."""
    try:
        return spm.SentencePieceProcessor(model_file=str(path))
    except (RuntimeError, OSError) as e:
        raise UlmfitError(f"{path} is not a readable SentencePiece model ({str(e).strip() or type(e).__name__}); it "
                          "is damaged or cut short: make or download it again.") from None


class SentencePieceEncoder:
    """Text → ids with a trained SentencePiece model, after the language's normalisation and text rules."""

    def __init__(self, model_path: Path, lang: Language, rules: list[str]):
        self.sp = load_sentencepiece(model_path)
        self.preprocess = make_preprocessor(lang, rules)

    def __call__(self, texts: list[str]) -> list[list[int]]:
        return self.sp.encode([self.preprocess(t) for t in texts])

    def __len__(self) -> int:
        return self.sp.get_piece_size()


class WordTokenizer:
    """Text → word tokens with the language's segmenter, after normalisation and fastai's rules."""

    def __init__(self, lang: Language, rules: list[str]):
        from ulmfit.langs.tokenizers import make_word_tokenizer

        self.tok = make_word_tokenizer(lang)
        self.preprocess = make_preprocessor(lang, rules)

    def __call__(self, texts: list[str]) -> list[list[str]]:
        return [list(toks) for toks in self.tok(self.preprocess(t) for t in texts)]


def write_word_vocab(path: Path, itos: list[str]) -> None:
    """A word vocabulary as `vocab.json`: a JSON list, one token per line (never a pickle)."""
    atomic_write_text(path, json.dumps(itos, ensure_ascii=False, indent=0) + "\n")


def load_word_vocab(path: Path) -> list[str]:
    itos = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(itos, list) or itos[: len(SPECIAL_TOKENS)] != SPECIAL_TOKENS:
        raise UlmfitError(f"{path} is not a ulmfit word vocabulary (a JSON list starting with fastai's special "
                          "tokens): make or download it again.")
    return itos


def ids_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size < 65536 else np.dtype(np.uint32)


def with_bos(docs: Iterable[list[int]], dtype: np.dtype) -> np.ndarray:
    """Concatenate documents into one flat array, each opened by `xxbos`."""
    parts = []
    for ids in docs:
        parts.append(np.array([BOS], dtype=dtype))
        parts.append(np.asarray(ids, dtype=dtype))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


_NO_SPACE_BEFORE = re.compile(r" +([.,;:!?%)\]}»”’'])")
_NO_SPACE_AFTER = re.compile(r"([(\[{«“‘]) +")
_REP = re.compile(r"xxrep (\d+) (\S)")
_WREP = re.compile(r"xxwrep (\d+) (\S+)")
_MAJ = re.compile(r"xxmaj\s*(\S)")
_UP = re.compile(r"xxup\s*(\S+)")


class TextTokenizer:
    """Text ↔ ids for a corpus or model directory: the same normalisation, rules and vocabulary as training.
    `Corpus.tokenizer()` and `ModelDir.tokenizer` build it from their own files.

    `decode` undoes what it can of the rules (case markers, repetition markers) to give readable text. fastai's
    `decode_spec_tokens` would do the same, but it never resets after `xxrep`/`xxwrep`, so every token after the
    first repetition comes out repeated (fastai 2.8.12); hence the few lines here.
    """

    def __init__(self, kind: str, lang: Language, rules: list[str], path: Path):
        self.kind, self.lang, self.rules = kind, lang, rules
        self.preprocess = make_preprocessor(lang, rules)
        if kind == "sentencepiece":
            self.sp = load_sentencepiece(path)
            self.itos = [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())]
        else:
            self.itos = load_word_vocab(path)
            self.stoi = {t: i for i, t in enumerate(self.itos)}
            self._segment = None  # the word segmenter, loaded on first use (spaCy, pythainlp, jieba)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        text = self.preprocess(text)
        if self.kind == "sentencepiece":
            ids = self.sp.encode(text)
        else:
            if self._segment is None:
                from ulmfit.langs.tokenizers import make_word_tokenizer

                self._segment = make_word_tokenizer(self.lang)
            ids = [self.stoi.get(t, UNK) for t in next(iter(self._segment([text])))]
        return [BOS] + ids if add_bos else ids

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids if int(i) not in (PAD, BOS, EOS)]
        if self.kind == "word":
            return self._join_words(_expand_markers([self.itos[i] for i in ids]))
        # case markers, for models trained with fastai's case rules on SentencePiece (fastai_ulmfit's)
        text = _UP.sub(lambda m: m.group(1).upper(), _MAJ.sub(lambda m: m.group(1).upper(), self.sp.decode(ids)))
        text = _WREP.sub(lambda m: " ".join([m.group(2)] * int(m.group(1))), text)
        return _REP.sub(lambda m: m.group(2) * int(m.group(1)), text)

    def _join_words(self, words: list[str]) -> str:
        text = self.lang.word_joiner.join(words)
        if self.lang.word_joiner == " ":
            text = _NO_SPACE_AFTER.sub(r"\1", _NO_SPACE_BEFORE.sub(r"\1", text)).replace(" \n ", "\n")
        return text


def _expand_markers(tokens: list[str]) -> list[str]:
    """fastai's case markers (`xxmaj`, `xxup`), then its repetition markers (`xxrep N c`, `xxwrep N w`), applied
    to the tokens that follow them, in the reverse of the order the rules added them."""
    cased, case = [], None
    for tok in tokens:
        if tok in ("xxmaj", "xxup"):
            case = tok
            continue
        cased.append(tok[:1].upper() + tok[1:] if case == "xxmaj" else tok.upper() if case == "xxup" else tok)
        case = None
    out, i = [], 0
    while i < len(cased):
        tok = cased[i]
        if tok in ("xxrep", "xxwrep") and i + 2 < len(cased) and cased[i + 1].isdigit():
            n, word = int(cased[i + 1]), cased[i + 2]
            out += [word * n] if tok == "xxrep" else [word] * n
            i += 3
        else:
            out.append(tok)
            i += 1
    return out
