"""Errors a user can cause.

Anything the user can fix (missing data, unknown category, unreadable image, bad config value,
missing weights) is raised as :class:`UserError` with ONE sentence that says what is wrong and what
to do. The entry point prints that sentence as the last line, without a traceback, and exits with
status 2.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any


class UserError(Exception):
    """A problem the user can fix; its message is one line that says what to do."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def user_error_in(exc: BaseException) -> UserError | None:
    """The UserError behind ``exc`` (Hydra's instantiate wraps errors raised by constructors)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UserError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def exit_on_user_error(task: Callable[..., Any], *args: Any) -> Any:
    """Run a command-line task; a UserError (also a wrapped one) ends as one ``error:`` line on
    stderr and exit status 2, anything else propagates with its traceback."""
    try:
        return task(*args)
    except Exception as exc:
        err = user_error_in(exc)
        if err is None:
            raise
        log = logging.getLogger("anomaly_kd")
        if log.hasHandlers():  # into the run's log too; without handlers logging would print it twice
            log.error("%s", err)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(UserError.exit_code)
