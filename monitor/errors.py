"""paymon's exceptions, in one tree.

Channel failures are *data* (a probe returns a :class:`~monitor.models.ProbeResult` with a bounded outcome);
exceptions are for bad configuration, bad usage and bugs::

    PaymonError
    ├── ConfigError          a config file is invalid (names file, line and field)  -> exit 2
    ├── UsageError           a command was called wrongly                           -> exit 2
    ├── StorageError         the database cannot be opened or migrated              -> exit 1
    ├── LockedError          another `paymon once` holds the lock                   -> exit 1
    └── SinkError            an alert or weight sink failed; ``retryable`` says whether a retry can help
"""

from __future__ import annotations

__all__ = ["ConfigError", "LockedError", "PaymonError", "SinkError", "StorageError", "UsageError"]


class PaymonError(Exception):
    """Base of every error paymon raises on purpose."""

    exit_code = 1


class ConfigError(PaymonError):
    """One or more problems in the config files; each line of the message names ``file:line field``."""

    exit_code = 2

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class UsageError(PaymonError):
    """A command was given arguments it cannot work with."""

    exit_code = 2


class StorageError(PaymonError):
    """The store cannot be reached, created or migrated."""


class LockedError(PaymonError):
    """Another process holds the run lock (overlapping ``paymon once``)."""


class SinkError(PaymonError):
    """A sink could not deliver. ``retryable`` is True when trying again later can help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable
