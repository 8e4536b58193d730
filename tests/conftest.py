"""Fixtures shared by all tests: the real data beside the repository, and figures to report."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

# ../shared/data relative to the repository root: real corpora and gold files too big for the repository.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

_MEASURED: list[tuple[str, float, str]] = []


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder; the test is skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data is absent: {SHARED_DATA} does not exist")
    return SHARED_DATA


@pytest.fixture
def measured() -> Callable[..., None]:
    """Record a figure (a score, a speed) that the terminal summary prints after the run."""

    def record(name: str, value: float, detail: str = "") -> None:
        _MEASURED.append((name, value, detail))

    return record


def pytest_terminal_summary(terminalreporter) -> None:
    for name, value, detail in _MEASURED:
        terminalreporter.write_line(f"measured: {name} = {value:.4g}" + (f" ({detail})" if detail else ""))
