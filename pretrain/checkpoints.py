"""Pretraining checkpoints (`RUN/checkpoints/`): this module alone writes, checks and reads them.

A checkpoint is a `torch.save` file named by the direction and the position it resumes at
(`fwd-e0002-b0000140.pt`: epoch 2, after 140 batches), with its sha256 beside it (`fwd-e0002-b0000140.pt.sha256`,
in the format `sha256sum -c` reads). Both are written under a temporary name, flushed to disk and renamed, the
checksum last: a checkpoint without its checksum was cut off and is never used. Each direction keeps its last two.

Loading verifies the checksum before `torch.load(weights_only=True)` (no pickled code runs), then checks that the
state has what a resume needs and that its weights are finite. A damaged checkpoint is reported in one line and
the one before it is used; it is deleted at the next save, so it never counts as one of the two kept.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

import torch

from ulmfit.errors import UlmfitError
from ulmfit.files import file_digest

log = logging.getLogger(__name__)

KEEP = 2
STATE_KEYS = ("model", "opt", "epoch", "batch", "hidden", "torch_rng", "history")
_NAME = re.compile(r"^(fwd|bwd)-e(\d+)-b(\d+)\.pt$")


def non_finite(tensors) -> str | None:
    """The name of the first floating-point tensor in `tensors` (name → tensor, nested dicts and lists too) that
    holds a NaN or an infinity; None when all are finite."""
    stack = [("", tensors)]
    while stack:
        name, obj = stack.pop()
        if isinstance(obj, torch.Tensor):
            if obj.is_floating_point() and not bool(torch.isfinite(obj).all()):
                return name or "a tensor"
        elif isinstance(obj, dict):
            stack += [(f"{name}.{k}" if name else str(k), v) for k, v in obj.items()]
        elif isinstance(obj, (list, tuple)):
            stack += [(f"{name}[{i}]", v) for i, v in enumerate(obj)]
    return None


class Checkpoints:
    """The checkpoints of one direction in a run's `checkpoints/` folder."""

    def __init__(self, folder: Path, direction: str):
        self.folder, self.direction = Path(folder), direction
        self.damaged: list[Path] = []  # found by `load`; deleted at the next `save`

    # --- what is there ---

    def _files(self) -> list[Path]:
        """Every file of this direction, finished or not."""
        if not self.folder.is_dir():
            return []
        return [p for p in self.folder.iterdir() if p.name.startswith(f"{self.direction}-")]

    def complete(self) -> list[Path]:
        """The checkpoints with their checksum, newest (furthest into training) first."""
        found = []
        for p in self._files():
            m = _NAME.match(p.name)
            if m and m.group(1) == self.direction and p.with_name(p.name + ".sha256").is_file():
                found.append(((int(m.group(2)), int(m.group(3))), p))
        return [p for _, p in sorted(found, reverse=True)]

    # --- writing ---

    def save(self, state: dict, epoch: int, batch: int) -> Path:
        """Write `state` as the checkpoint at (epoch, batch), then keep only it and the one before it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{self.direction}-e{epoch:04d}-b{batch:07d}.pt"
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            hashed = _HashingWriter(f)  # torch.save writes its zip archive in one pass: hash it on the way
            torch.save(state, hashed)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _write_durably(path.with_name(path.name + ".sha256"), f"{hashed.sha256.hexdigest()}  {path.name}\n")
        _fsync_dir(self.folder)
        self._prune(path)
        return path

    def _prune(self, newest: Path) -> None:
        """Keep `newest` and the finished checkpoint just before it; delete the rest (older ones, damaged ones,
        ones cut off while written, and any left from beyond this point by a run that went back to an earlier
        checkpoint)."""
        for p in self.damaged:
            _remove(p)
        self.damaged = []
        earlier = [p for p in self.complete() if p != newest and _position(p) < _position(newest)]
        keep = {newest, *earlier[: KEEP - 1]}
        for p in self._files():
            base = p.name.removesuffix(".sha256")
            if self.folder / base not in keep:
                p.unlink(missing_ok=True)

    def remove_all(self) -> None:
        """Delete this direction's checkpoints (its model is finished), and the folder once it is empty."""
        for p in self._files():
            p.unlink(missing_ok=True)
        try:
            self.folder.rmdir()
        except OSError:
            pass  # the other direction's checkpoints are still there

    # --- reading ---

    def load(self, device: torch.device | str) -> dict | None:
        """The newest checkpoint that passes every check, or None when there is none at all.

        Each damaged one is logged in one line, and the one before it is tried. When every checkpoint is damaged,
        a `UlmfitError` says which ones and what to do.
        """
        problems = []
        for path in self.complete():
            why = self._problem(path)
            state = None
            if why is None:
                try:
                    state = torch.load(path, map_location=device, weights_only=True)
                except Exception as e:  # noqa: BLE001  (a file that passed its checksum but torch cannot read)
                    why = f"unreadable ({type(e).__name__})"
            if why is None:
                why = _state_problem(state)
            if why is None:
                if problems:
                    log.warning("resuming the %s model from the earlier checkpoint %s", self.direction, path.name)
                return state
            log.warning("the %s checkpoint %s is damaged (%s); trying the one before it", self.direction,
                        path.name, why)
            problems.append(f"{path.name}: {why}")
            self.damaged.append(path)
        if problems:
            raise UlmfitError(f"no usable {self.direction} checkpoint in {self.folder} ({'; '.join(problems)}); "
                              f"delete {self.folder} and run the same command without --resume to train the "
                              f"{self.direction} model from the start.")
        return None

    def _problem(self, path: Path) -> str | None:
        """What is wrong with a checkpoint file by its checksum; None when it matches."""
        try:
            expected = path.with_name(path.name + ".sha256").read_text(encoding="ascii").split()[0]
            actual = file_digest(path)
        except (OSError, UnicodeDecodeError, IndexError) as e:
            return f"unreadable checksum or file ({type(e).__name__})"
        return None if actual == expected else "checksum mismatch: the file changed after it was written"


class _HashingWriter:
    """A binary file that also keeps the sha256 of everything written to it (writes only, in order)."""

    def __init__(self, f):
        self.f, self.sha256 = f, hashlib.sha256()

    def write(self, data) -> int:
        self.sha256.update(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def _state_problem(state) -> str | None:
    if not isinstance(state, dict) or any(k not in state for k in STATE_KEYS):
        return "not a ulmfit checkpoint"
    bad = non_finite({"model": state["model"], "opt": state["opt"]})
    return f"{bad} holds NaN or infinite values" if bad else None


def _position(path: Path) -> tuple[int, int]:
    m = _NAME.match(path.name)
    return (int(m.group(2)), int(m.group(3))) if m else (-1, -1)


def _write_durably(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="ascii") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(folder: Path) -> None:
    """Make the renames in `folder` durable too (a power cut after a rename must not lose it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    path.with_name(path.name + ".sha256").unlink(missing_ok=True)
    path.unlink(missing_ok=True)
