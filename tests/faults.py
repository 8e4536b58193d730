"""Checks shared by the fault-injection tests: what a CLI user sees when something is wrong."""
from __future__ import annotations

import signal
import subprocess
import time

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


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float) -> None:
    """Poll `condition()` until it holds; fail at once if `proc` (with stderr piped) ends first, or after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def kill_when(proc: subprocess.Popen, condition, what: str, timeout: float = 300) -> None:
    """SIGKILL `proc` once `condition()` holds (and in any case: a failed wait leaves no process behind)."""
    try:
        wait_for(condition, proc, what, timeout)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
