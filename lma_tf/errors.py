"""The errors a user can act on, shared by every stage.

The command layer (`lma_tf.cli`) turns them into one `lma-tf CMD: error: ...`
line and a non-zero exit, never a traceback. Library code raises them with a
message that says what went wrong, which file / flag / slice, and what to do.
"""

from __future__ import annotations


class LmaError(RuntimeError):
    """A failure the user can act on (exit status 1)."""

    exit_code = 1


class UsageError(LmaError, ValueError):
    """A user mistake in a flag, a config field or a path (exit status 2)."""

    exit_code = 2
