"""Checks shared by the fault-injection tests: what a CLI user sees when something is wrong."""
from __future__ import annotations

from click.testing import Result


def assert_one_line_error(result: Result, *fragments: str) -> str:
    """The command failed with exit status 1 and one `error:` line on stderr naming every fragment, and no
    traceback: an exception that escaped the CLI shows up as `result.exception` other than SystemExit."""
    assert not (result.exception and not isinstance(result.exception, SystemExit)), \
        f"an exception escaped the CLI: {result.exception!r}\n{result.output}"
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
    return errors[0]
