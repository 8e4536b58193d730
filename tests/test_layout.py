"""The architecture rules of DESIGN.md, checked on the source: data flows one way (core `ulmfit/` → langs →
pretrain → zoo → benchmarks), and no module imports another module's `_private` names."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder → (import package, rank): a module may import packages of its own rank or lower.
PARTS = {"ulmfit": ("ulmfit", 0), "langs": ("ulmfit.langs", 1), "pretrain": ("ulmfit.pretrain", 2),
         "zoo": ("ulmfit.zoo", 3), "benchmarks": ("ulmfit.benchmarks", 4)}
FACADE = {"ulmfit/__init__.py", "ulmfit/cli.py", "ulmfit/__main__.py"}  # they may import any part


def modules() -> list[Path]:
    """The installed modules: every .py of the five parts, but not benchmarks/compare (not installed)."""
    found = []
    for folder in PARTS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "compare" not in path.relative_to(ROOT).parts:
                found.append(path)
    return found


def rank_of(module: str) -> int | None:
    """The rank of the part an `ulmfit...` module name belongs to (None for other packages)."""
    best = None
    for package, rank in PARTS.values():
        if module == package or module.startswith(package + "."):
            if best is None or len(package) > len(best[0]):
                best = (package, rank)
    return best[1] if best else None


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, imported names, line) for every import in a file, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [alias.name for alias in node.names], node.lineno))
    return found


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_upward_imports_and_no_private_names(path):
    rel = path.relative_to(ROOT).as_posix()
    own = PARTS[rel.split("/")[0]][1]
    for module, names, line in imports(path):
        rank = rank_of(module)
        if rank is None:
            continue
        if rel not in FACADE and module != "ulmfit":  # `from ulmfit import __version__` is the package itself
            assert rank <= own, f"{rel}:{line} imports {module}, a higher part"
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert not private, f"{rel}:{line} imports private names {private} from {module}"
