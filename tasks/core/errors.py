"""The one user-facing error type: bad input or bad params, reported as one line (exit code 2)."""


class MokuflowError(Exception):
    """A user-facing error: bad input or bad params. The message names the file and the problem."""
