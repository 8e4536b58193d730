"""The one exception type the package raises for bad input or a bad environment."""


class UlmfitError(Exception):
    """A problem the user can fix, stated in one sentence that says what is wrong and what to do.

    The CLI prints the message alone (no traceback) and exits with status 1.
    """
