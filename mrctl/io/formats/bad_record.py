"""Errors in a task's input data, raised inside the task (like a user's exception).

They are ValueErrors, not MrctlErrors: they fail an attempt, and the worker or the inline loop
turns them into the job's failure message. Each carries `mrctl_line`, the 0-based line within
the chunk where the record starts, which the runner adds to the chunk's first line to name the
file and line; a bad-record policy may catch BadRecord to skip the record instead.
"""

from __future__ import annotations


class BadRecord(ValueError):
    """A record that cannot be parsed in its input's format (invalid JSON, a CSV row with the
    wrong number of fields); `mrctl_line` is its line within the chunk (0-based)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.mrctl_line = line


class CorruptInput(ValueError):
    """A compressed input that cannot be decompressed (truncated or not in its format)."""
