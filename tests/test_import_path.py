"""`import ulmfit` from the folder above a clone named `ulmfit` (issue 13).

With a plain editable install the package is found by setuptools' import hook, which Python asks only after every
sys.path entry; the clone folder in the current directory (no `__init__.py`) then became an empty namespace
package: `module 'ulmfit' has no attribute 'from_pretrained'`. The Makefile's install adds a path entry that
holds the package as a regular one (see the Makefile).
"""
from __future__ import annotations

import subprocess
import sys


def test_import_from_the_folder_above_a_clone_named_ulmfit(tmp_path):
    clone = tmp_path / "ulmfit"  # what `git clone … ulmfit && cd ..` leaves in the current directory
    (clone / "docs").mkdir(parents=True)
    (clone / "README.md").write_text("# ulmfit\n")
    code = ("import ulmfit, ulmfit.langs, ulmfit.benchmarks.tasks; "
            "print(ulmfit.from_pretrained.__name__, ulmfit.langs.get_lang('vi').name)")
    runs = {}
    for args in (["-c", code], ["-m", "ulmfit", "--help"]):
        runs[args[0]] = result = subprocess.run([sys.executable, *args], cwd=tmp_path, capture_output=True,
                                                text=True, timeout=300)
        assert result.returncode == 0, (f"{args[0]} failed from a folder holding ./ulmfit; set up the environment "
                                        f"with `make .venv/.installed`:\n{result.stderr}")
    assert runs["-c"].stdout.split() == ["from_pretrained", "Vietnamese"]
    assert "prepare" in runs["-m"].stdout
