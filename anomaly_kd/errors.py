"""Errors a user can cause.

Anything the user can fix (missing data, unknown category, unreadable image, bad config value,
missing weights) is raised as :class:`UserError` with ONE sentence that says what is wrong and what
to do. The entry point prints that sentence as the last line, without a traceback, and exits with
status 2.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; its message is one line that says what to do."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
