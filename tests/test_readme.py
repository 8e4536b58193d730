"""The README: short enough to read, and its first example works as printed."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_stays_short():
    assert len(README.encode("utf-8")) < 15_000, "move reference prose to docs/how-it-works.md"


@pytest.mark.slow
def test_the_first_example_runs_as_printed(tmp_path):
    """The quick start's commands and its Python, in a fresh folder: `make demo` is the `ulmfit prepare` line of the
    Makefile, and each `ulmfit` line runs as `python -m ulmfit`."""
    setup, quick_start = re.findall(r"```bash\n(.*?)```", README, flags=re.S)[:2]
    python = re.search(r"```python\n(.*?)```", README, flags=re.S)[1]
    assert setup.splitlines()[0].startswith("make demo")
    demo = re.search(r"^demo:.*\n\t\$\(VENV\)/bin/(ulmfit .*)$", (ROOT / "Makefile").read_text(), flags=re.M)[1]
    commands = [line.split("#")[0] for line in quick_start.splitlines() if line.startswith("ulmfit ")]
    assert len(commands) >= 2  # pretrain and generate
    lines = [demo] + commands
    for line in lines:
        done = subprocess.run([sys.executable, "-m", "ulmfit", *shlex.split(line)[1:]], cwd=tmp_path,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{line}\n{done.stderr}"
    (tmp_path / "first.py").write_text(python)
    done = subprocess.run([sys.executable, "first.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("The history of")
    assert (tmp_path / "fastai-sample" / "models" / "sample.pth").is_file()
