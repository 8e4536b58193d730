"""The model directory (DESIGN.md): what `ulmfit pretrain`, `convert`, `remap` and `finetune` write and every later
step reads. This module alone reads, validates and writes it.

    config.json              format (ulmfit-model, or ulmfit-classifier for a classifier), language, tokenizer
                             spec, architecture, directions, corpus or task, recipe, metrics
    spm.model | vocab.json   the tokenizer
    fwd/model.safetensors    fastai state-dict key names (get_language_model, or get_text_classifier)
    bwd/model.safetensors
    labels.json              a classifier's labels, in the order of its probability columns
    metrics.json             per-epoch figures
    README.md                the model card

`config.json` is written last: a folder without it is not a finished model. Weights go through safetensors'
`save_model`/`load_model`, which store the tied embedding/decoder matrix once.

A model directory may come from anywhere (a Hub repository is someone else's files), so `open` checks every field
of `config.json` that sizes or builds something against sane bounds before anything is allocated, and loading a
direction checks the weights file's header (tensor names, shapes and dtypes, read without loading the tensors)
against the model the config describes before reading the tensors, and their values after. Every failure is one
`UlmfitError` sentence that names the model and the field or tensor.
"""
from __future__ import annotations

import json
import shutil
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ulmfit import __version__
from ulmfit.config import ARCH_KEYS, PretrainConfig
from ulmfit.errors import UlmfitError
from ulmfit.files import atomic_write_text, file_digest, read_json, write_json
from ulmfit.langs import get_lang
from ulmfit.langs.rules import RULES
from ulmfit.pretrain.corpus import META as CORPUS_META
from ulmfit.pretrain.tokenizer import SP_MODEL, SPECIAL_TOKENS, WORD_VOCAB, TextTokenizer, write_word_vocab

if TYPE_CHECKING:  # torch is imported by what builds or loads a model, not by reading a config
    import torch

FORMAT = "ulmfit-model"
CLASSIFIER_FORMAT = "ulmfit-classifier"
CLASSIFIER_FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
LABELS = "labels.json"
METRICS = "metrics.json"
CARD = "README.md"
DIRECTIONS = ("fwd", "bwd")
ENCODER = "0.encoder.weight"  # the embedding matrix in fastai's language-model state dict
TOKENIZER_FILES = {"sentencepiece": SP_MODEL, "word": WORD_VOCAB}
# What a model or classifier directory publishes, and all that a download fetches.
PUBLISHED_FILES = [CONFIG, CARD, SP_MODEL, WORD_VOCAB, LABELS, METRICS, *(f"{d}/{WEIGHTS}" for d in DIRECTIONS)]

# Sane bounds on what a config.json may ask for (ULMFiT's paper model is 400/1152/3 over 60,000 words).
MAX_LAYERS = 16
MAX_WIDTH = 16_384  # emb_sz and n_hid
MAX_VOCAB = 2 ** 22
MAX_SEQ = 2 ** 20  # a classifier's seq_len and max_len
MAX_LABELS = 100_000
MAX_DROP_MULT = 10.0
MAX_CONFIG_BYTES = 16 << 20
SIZE_KEYS = ("emb_sz", "n_hid", "n_layers", "pad_token", "bidir")  # what a classifier's config.json must give
DROPOUT_KEYS = tuple(k for k in ARCH_KEYS if k.endswith("_p"))
CLASSIFIER_ARCH_KEYS = SIZE_KEYS + DROPOUT_KEYS  # the rest of its dropouts come from fastai's classifier config
FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}


def language_model_config(cfg: PretrainConfig, vocab_size: int | None, lang: str, tokenizer: dict) -> dict:
    """The core of a language model's `config.json`: architecture, vocabulary size, language and the tokenizer
    spec (`type`, `file`, `rules`; `hash` where known). Writers add directions, corpus, metrics and provenance."""
    return {
        "format": FORMAT,
        "architecture": "AWD_LSTM",
        "arch": cfg.arch(),
        "drop_mult": cfg.drop_mult,
        "vocab_size": vocab_size,
        "lang": lang,
        "tokenizer": {"special_tokens": SPECIAL_TOKENS} | tokenizer,
    }


def build_language_model(config: dict) -> torch.nn.Module:
    """fastai's AWD-LSTM language model (`get_language_model`) for a model config."""
    from fastai.text.models.awdlstm import AWD_LSTM
    from fastai.text.models.core import get_language_model

    return get_language_model(AWD_LSTM, config["vocab_size"], config=dict(config["arch"]),
                              drop_mult=config.get("drop_mult", 1.0))


def build_classifier(config: dict) -> torch.nn.Module:
    """fastai's `get_text_classifier` (AWD-LSTM encoder through `SentenceEncoder`, concat-pooling head) for a
    classifier config."""
    from fastai.text.models.awdlstm import AWD_LSTM
    from fastai.text.models.core import get_text_classifier

    head = config["head"]
    return get_text_classifier(AWD_LSTM, config["vocab_size"], len(config["labels"]), seq_len=head["seq_len"],
                               config=dict(config["arch"]), drop_mult=head["drop_mult"], max_len=head["max_len"])


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """A model's weights as safetensors, written under a temporary name and renamed."""
    from safetensors.torch import save_model

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_model(model, str(tmp), metadata={"format": "pt", "library": "ulmfit"})
    tmp.replace(path)


# --- checking what a config.json says -------------------------------------------------------------------------------

def check_config(config: dict, where: str) -> None:
    """Raise a one-sentence `UlmfitError` naming `where` and the field for the first value of a model or classifier
    config that is missing, of the wrong type or outside its sane bounds. Nothing is built or allocated here."""
    fix = "the model is damaged or was not written by ulmfit: download or write it again."

    def fail(field: str, value: Any, want: str):
        shown = "missing" if value is _MISSING else repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise UlmfitError(f"{where}: {CONFIG} has {field} = {shown}, but it must be {want}; {fix}")

    def field(section: dict, key: str, prefix: str, ok: Callable[[Any], bool], want: str) -> Any:
        value = section.get(key, _MISSING)
        if value is _MISSING or not ok(value):
            fail(prefix + key, value, want)
        return value

    def integer(section: dict, key: str, lo: int, hi: int, prefix: str = "") -> int:
        return field(section, key, prefix, lambda v: _is_int(v) and lo <= v <= hi,
                     f"an integer from {lo:,} to {hi:,}")

    def number(section: dict, key: str, lo: float, hi: float, prefix: str = "", below: bool = False) -> float:
        return field(section, key, prefix, lambda v: _is_number(v) and lo <= v and (v < hi if below else v <= hi),
                     f"a number from {lo} to {'below ' if below else ''}{hi}")

    def mapping(section: dict, key: str) -> dict:
        return field(section, key, "", lambda v: isinstance(v, dict), "a JSON object")

    def flag(section: dict, key: str, prefix: str = "") -> bool:
        return field(section, key, prefix, lambda v: isinstance(v, bool), "true or false")

    classifier = config.get("format") == CLASSIFIER_FORMAT
    if classifier:
        integer(config, "format_version", 0, CLASSIFIER_FORMAT_VERSION)
    field(config, "lang", "", lambda v: isinstance(v, str) and _known_lang(v), "a Wikipedia language code such as 'vi'")
    vocab = integer(config, "vocab_size", len(SPECIAL_TOKENS), MAX_VOCAB)
    tok = mapping(config, "tokenizer")
    kind = field(tok, "type", "tokenizer.", lambda v: v in TOKENIZER_FILES, "sentencepiece or word")
    field(tok, "file", "tokenizer.", lambda v: v == TOKENIZER_FILES[kind],
          f"{TOKENIZER_FILES[kind]!r}, the {kind} tokenizer's file in the model's folder")
    field(tok, "rules", "tokenizer.", lambda v: _names_in(v, RULES), f"a list of text rules among {', '.join(RULES)}")
    field(config, "directions", "", lambda v: _names_in(v, DIRECTIONS) and v and len(set(v)) == len(v),
          "a non-empty list of fwd and bwd")

    arch = mapping(config, "arch")
    allowed = CLASSIFIER_ARCH_KEYS if classifier else ARCH_KEYS
    if unknown := [k for k in arch if k not in allowed]:
        fail(f"arch.{unknown[0]}", arch[unknown[0]], f"left out: the settings are {', '.join(allowed)}")
    for key in ("emb_sz", "n_hid"):
        integer(arch, key, 1, MAX_WIDTH, "arch.")
    integer(arch, "n_layers", 1, MAX_LAYERS, "arch.")
    integer(arch, "pad_token", 0, vocab - 1, "arch.")
    flag(arch, "bidir", "arch.")
    for key in DROPOUT_KEYS:
        if key in arch or not classifier:  # a classifier takes the dropouts it does not give from fastai
            number(arch, key, 0, 1, "arch.", below=True)
    if classifier:
        head = mapping(config, "head")
        integer(head, "seq_len", 1, MAX_SEQ, "head.")
        integer(head, "max_len", 1, MAX_SEQ, "head.")
        number(head, "drop_mult", 0, MAX_DROP_MULT, "head.")
        if "max_tokens_per_text" in head:
            integer(head, "max_tokens_per_text", 2, MAX_SEQ, "head.")
        field(config, "labels", "", lambda v: isinstance(v, list) and 0 < len(v) <= MAX_LABELS
              and all(isinstance(x, str) and x for x in v) and len(set(v)) == len(v),
              f"a list of 1 to {MAX_LABELS:,} distinct, non-empty label names")
        flag(config, "multi_label")
        if isinstance(config.get("data"), dict) and "unknown_rate" in config["data"]:
            number(config["data"], "unknown_rate", 0, 1, "data.")
        return
    for key in ("tie_weights", "out_bias"):
        flag(arch, key, "arch.")
    highest = max(arch[k] for k in DROPOUT_KEYS)
    if "drop_mult" in config:
        number(config, "drop_mult", 0, 1 / highest if highest else MAX_DROP_MULT, below=bool(highest))


_MISSING = object()


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def _names_in(value: Any, names) -> bool:
    """`value` is a list of strings, each one of `names`."""
    return isinstance(value, list) and all(isinstance(v, str) and v in names for v in value)


def _known_lang(code: str) -> bool:
    try:
        get_lang(code)
    except UlmfitError:
        return False
    return True


def expected_size(config: dict) -> int:
    """About how many numbers the weights of a (checked) config hold: the embedding and the LSTM layers. A weights
    file that holds far fewer was not written for this config."""
    arch = config["arch"]
    emb, hid, layers = arch["emb_sz"], arch["n_hid"], arch["n_layers"]
    total = config["vocab_size"] * emb
    for layer in range(layers):
        n_in, n_out = (emb if layer == 0 else hid), (hid if layer < layers - 1 else emb)
        total += 4 * n_out * (n_in + n_out)
    return total


def _numel(shape: list[int]) -> int:
    n = 1
    for size in shape:
        n *= size
    return n


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]


def _read_config(path: Path) -> Any:
    """The JSON in `path`, or None when it cannot be read as JSON (or is far larger than a config)."""
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            return None
        return json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):  # RecursionError: hostile nesting such as [[[[…
        return None


class ModelDir:
    """A model directory: `ModelDir.open(path)` reads and checks `config.json` once; the rest is read on demand.

    `spec` is what the user named it by and `repo_id` the Hub repository it came from, where one did (set by
    `ulmfit.zoo.pretrained.open_model`), so that what is made from it can say where it started.
    """

    def __init__(self, path: Path | str, config: dict, spec: str | None = None, repo_id: str | None = None):
        self.path, self.config = Path(path), config
        self.spec, self.repo_id = spec or str(path), repo_id

    @classmethod
    def open(cls, path: Path | str, kind: str | None = None, *, spec: str | None = None,
             repo_id: str | None = None) -> ModelDir:
        """The finished model directory at `path`; `kind` (FORMAT or CLASSIFIER_FORMAT) insists on one of them.

        Its `config.json` is checked (`check_config`); errors name `spec` (what the user gave) where there is one.
        """
        path = Path(path)
        where = spec if spec and spec != str(path) else str(path)
        what = "classifier" if kind == CLASSIFIER_FORMAT else "ulmfit model"
        if not (path / CONFIG).is_file():
            raise UlmfitError(cls._not_a_model(path, where, what))
        config = _read_config(path / CONFIG)
        if config is None:
            raise UlmfitError(f"{where}: {CONFIG} is not readable JSON: the directory is damaged; download or write "
                              "the model again.")
        fmt = config.get("format") if isinstance(config, dict) else None
        if fmt == CLASSIFIER_FORMAT and kind == FORMAT:
            raise UlmfitError(f"{where} is a classifier (written by `ulmfit finetune`), not a language model; give "
                              "the language model it was trained from, or a pretrained one.")
        if fmt not in (FORMAT, CLASSIFIER_FORMAT) or (kind is not None and fmt != kind):
            wanted = "a ulmfit classifier; give a directory written by `ulmfit finetune`" \
                if kind == CLASSIFIER_FORMAT else "a ulmfit model config"
            raise UlmfitError(f"{where}: {CONFIG} is not {wanted} (format {str(fmt)[:40]!r}).")
        version = config.get("format_version", 0)
        if fmt == CLASSIFIER_FORMAT and _is_int(version) and version > CLASSIFIER_FORMAT_VERSION:
            raise UlmfitError(f"{where} was written by a newer ulmfit (format version {version}); "
                              "upgrade ulmfit to read it.")
        check_config(config, where)
        return cls(path, config, spec=spec, repo_id=repo_id)

    @staticmethod
    def _not_a_model(path: Path, where: str, what: str) -> str:
        """Why a folder without config.json is not a model, and what to do instead."""
        from ulmfit.pretrain.train import RUN_FILE

        if not path.exists():
            return f"{where} does not exist: give a {what} directory, a catalogue name or hf-hub:ORG/NAME."
        if not path.is_dir():
            return f"{where} is a file, not a {what} directory (a folder with {CONFIG})."
        if (path / CORPUS_META).is_file():
            return (f"{where} is a corpus written by `ulmfit prepare`, not a {what}: train a language model on it "
                    f"first with `ulmfit pretrain {path} --out runs/NAME`, then give that folder.")
        if (path / RUN_FILE).is_file():
            return (f"{where} holds a pretraining run that has not finished (it has no {CONFIG} yet): let "
                    "`ulmfit pretrain` finish, or continue it with the same command and --resume.")
        return f"{where} is not a {what} directory: it has no {CONFIG}."

    # --- what the config says ---

    @property
    def is_classifier(self) -> bool:
        return self.config.get("format") == CLASSIFIER_FORMAT

    @property
    def lang(self) -> str:
        return self.config["lang"]

    @property
    def directions(self) -> list[str]:
        return list(self.config.get("directions") or [])

    @property
    def tokenizer_file(self) -> Path:
        """The tokenizer file, which must be the one its type names: a config cannot point outside the folder."""
        spec = self.config.get("tokenizer") or {}
        name = TOKENIZER_FILES.get(spec.get("type"))
        if name is None or spec.get("file") != name:
            raise UlmfitError(f"{self.path / CONFIG} names the tokenizer {spec.get('type')!r} with the file "
                              f"{spec.get('file')!r}; a ulmfit model has spm.model (sentencepiece) or vocab.json "
                              "(word): download or write the model again.")
        return self.path / name

    def weights(self, direction: str) -> Path:
        if direction not in DIRECTIONS:
            raise UlmfitError(f"direction must be 'fwd' or 'bwd', not '{direction}'.")
        return self.path / direction / WEIGHTS

    # --- reading ---

    @cached_property
    def tokenizer(self) -> TextTokenizer:
        """The tokenizer, which must have one id per row of the model's embedding (`vocab_size`)."""
        spec = self.config["tokenizer"]
        path = self.tokenizer_file
        if not path.is_file():
            raise UlmfitError(f"{self.spec} lacks its tokenizer file {path.name}: download or write the model again.")
        try:
            tokenizer = TextTokenizer(spec["type"], get_lang(self.lang), spec["rules"], path)
        except UlmfitError as e:  # what is wrong with the file, and what to do
            raise UlmfitError(f"{self.spec}: {e}") from None
        except (OSError, ValueError) as e:  # a word vocabulary that is not UTF-8 or not JSON
            raise UlmfitError(f"{self.spec}: {path.name} is not a readable {spec['type']} tokenizer "
                              f"({_first_line(e)}); download or write the model again.") from None
        if self.config.get("vocab_size") is not None and len(tokenizer) != self.config["vocab_size"]:
            raise UlmfitError(f"{self.spec}: {path.name} has {len(tokenizer):,} tokens but {CONFIG} says vocab_size "
                              f"{self.config['vocab_size']:,}; they do not belong together: download or write the "
                              "model again.")
        return tokenizer

    def load_language_model(self, direction: str = "fwd", device: torch.device | str = "cpu") -> torch.nn.Module:
        """The language model of one direction, in eval mode."""
        return self._load(build_language_model, direction, device)

    def load_classifier(self, direction: str, device: torch.device | str = "cpu") -> torch.nn.Module:
        """The classifier of one direction, in eval mode."""
        return self._load(build_classifier, direction, device)

    def _load(self, build: Callable[[dict], torch.nn.Module], direction: str,
              device: torch.device | str) -> torch.nn.Module:
        """Check the weights file's header against the config, build the model, load the tensors, check them."""
        import torch
        from safetensors import SafetensorError
        from safetensors.torch import load_model

        path = self.weights(direction)
        name = f"{direction}/{WEIGHTS}"
        if not path.is_file():
            have = [d for d in DIRECTIONS if self.weights(d).is_file()]
            raise UlmfitError(f"{self.spec} has no {direction} model (it has: {', '.join(have) or 'none'}).")
        header, aliases = self._header(path, name)
        stored = sum(_numel(shape) for shape, _ in header.values())
        if expected_size(self.config) > 2 * stored + (1 << 20):
            raise UlmfitError(f"{self.spec}: {name} holds {stored:,} numbers but {CONFIG} (vocab_size, arch) "
                              f"describes a model of about {expected_size(self.config):,}: the two do not belong "
                              "together; download or write the model again.")
        try:
            model = build(self.config)
        except (TypeError, ValueError, RuntimeError) as e:
            raise UlmfitError(f"{self.spec}: fastai cannot build the model {CONFIG} describes ({_first_line(e)}); "
                              "download or write the model again.") from None
        self._check_tensors(model, header, aliases, name)
        try:
            load_model(model, str(path), device=str(device))
        except (SafetensorError, RuntimeError, OSError) as e:
            raise UlmfitError(f"{self.spec}: {name} could not be read ({_first_line(e)}); download or write the "
                              "model again.") from None
        for key, tensor in model.state_dict().items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise UlmfitError(f"{self.spec}: {name} holds NaN or infinite values in {key}: the model is damaged "
                                  "(or its training diverged); download or train it again.")
        return model.to(device).eval()

    def _header(self, path: Path, name: str) -> tuple[dict[str, tuple[list[int], str]], dict[str, str]]:
        """The tensors a safetensors file holds (name → shape, dtype), read from its header alone, and the names
        that its metadata maps onto a stored tensor (tied weights are stored once)."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                header = {k: (f.get_slice(k).get_shape(), f.get_slice(k).get_dtype()) for k in f.keys()}
                metadata = f.metadata() or {}
        except (SafetensorError, OSError, ValueError) as e:
            raise UlmfitError(f"{self.spec}: {name} is not a readable safetensors file ({_first_line(e)}): it is "
                              "damaged or cut short; download or write the model again.") from None
        return header, {k: v for k, v in metadata.items() if v in header}

    def _check_tensors(self, model: torch.nn.Module, header: dict, aliases: dict[str, str], name: str) -> None:
        """Every tensor of the model is in the file (directly, or as a tied tensor stored once), with its shape
        and kind of dtype, and the file holds nothing else."""
        expected = model.state_dict()
        shared: dict[int, list[str]] = {}  # tied tensors share storage; safetensors stores one of their names
        for key, tensor in expected.items():
            if tensor.numel():
                shared.setdefault(tensor.untyped_storage().data_ptr(), []).append(key)
        fix = f"{name} does not match the model {CONFIG} describes"
        if unexpected := sorted(set(header) - set(expected)):
            raise UlmfitError(f"{self.spec}: {fix}: it holds {unexpected[0]}, which the model has not "
                              f"({len(unexpected)} such tensors); download or write the model again.")
        for key, tensor in expected.items():
            group = shared.get(tensor.untyped_storage().data_ptr(), [key]) if tensor.numel() else [key]
            stored = next((k for k in [key, aliases.get(key), *group] if k in header), None)
            if stored is None:
                raise UlmfitError(f"{self.spec}: {fix}: it lacks {key}; download or write the model again.")
            shape, dtype = header[stored]
            if tuple(shape) != tuple(tensor.shape):
                raise UlmfitError(f"{self.spec}: {fix}: {stored} has the shape {tuple(shape)}, but vocab_size and "
                                  f"arch in {CONFIG} call for {tuple(tensor.shape)}; download or write the model "
                                  "again.")
            if (dtype in FLOAT_DTYPES) != tensor.is_floating_point():
                raise UlmfitError(f"{self.spec}: {fix}: {stored} is stored as {dtype}; download or write the model "
                                  "again.")

    def labels(self) -> list[str]:
        return list(self.config["labels"])

    def metrics(self) -> dict:
        return read_json(self.path / METRICS) or {}

    def publishable_files(self) -> list[str]:
        """The files that go to the Hub; an error names what an unfinished directory lacks."""
        required = [CONFIG, self.config.get("tokenizer", {}).get("file"),
                    *(f"{d}/{WEIGHTS}" for d in self.directions)]
        missing = [f for f in required if not f or not (self.path / f).is_file()]
        if not self.directions or missing:
            raise UlmfitError(f"{self.path} is not a finished model directory: it lacks "
                              f"{', '.join(str(m) for m in missing) or 'trained directions'}; "
                              "let `ulmfit pretrain` (or `ulmfit finetune`) finish, or resume it, before publishing.")
        return [f for f in PUBLISHED_FILES if (self.path / f).is_file()]

    # --- writing ---

    def save_weights(self, direction: str, model: torch.nn.Module) -> None:
        save_weights(model, self.weights(direction))

    def write_tokenizer(self, kind: str, source: Path | list[str]) -> dict:
        """Write the tokenizer: a copy of a SentencePiece model file, or a word list as `vocab.json`. Returns the
        file and hash entries of the config's tokenizer spec."""
        path = self.path / TOKENIZER_FILES[kind]
        self.path.mkdir(parents=True, exist_ok=True)
        if isinstance(source, list):
            write_word_vocab(path, source)
        elif Path(source).resolve() != path.resolve():
            shutil.copyfile(source, path)
        self.__dict__.pop("tokenizer", None)
        return {"file": path.name, "hash": "sha256:" + file_digest(path)}

    def write_card(self, card) -> None:
        atomic_write_text(self.path / CARD, str(card).rstrip("\n") + "\n")

    def write_metrics(self, metrics: dict) -> None:
        write_json(self.path / METRICS, metrics)

    def finish(self, config: dict, card=None) -> None:
        """Write the labels of a classifier, the model card, then `config.json`: the directory is now finished."""
        self.config = config | {"ulmfit_version": __version__}
        if self.is_classifier:
            write_json(self.path / LABELS, self.config["labels"])
        if card is not None:
            self.write_card(card)
        write_json(self.path / CONFIG, self.config)
