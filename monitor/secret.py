"""Secrets: values that come from the environment and must never be shown.

``Secret`` wraps a credential so that ``str``/``repr``/f-strings print ``'***'``; the value is reached only
through :meth:`Secret.reveal`, at the one place that puts it on the wire. ``Redactor`` is the second line of
defence: it knows every secret value in the loaded config and scrubs them from any text (log records, stored
probe details, error messages) before that text leaves the process.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["MASK", "Redactor", "RedactingFilter", "Secret"]

MASK = "***"


class Secret:
    """A credential whose text form is masked. Compare with ``==``; read with ``reveal()``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the real value, for the request that needs it. Never log the result."""
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("Secret values are not serialisable")


class Redactor:
    """Replaces every known secret value (and its URL-encoded form) in a text with ``***``.

    Values shorter than 6 characters are ignored: masking every ``1`` in a log line would hide more than it
    protects, and such values are not credentials.
    """

    def __init__(self, values: Iterable[str | Secret] = ()) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*values)

    def add(self, *values: str | Secret) -> None:
        """Learn more secret values."""
        from urllib.parse import quote, quote_plus

        for v in values:
            raw = v.reveal() if isinstance(v, Secret) else v
            if len(raw) >= 6:
                self._values.update({raw, quote(raw, safe=""), quote_plus(raw)})
        if self._values:
            alts = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(a) for a in alts))

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def __len__(self) -> int:
        return len(self._values)


class RedactingFilter(logging.Filter):
    """A logging filter that renders each record, scrubs it, and freezes the scrubbed text into it."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            formatted = logging.Formatter().formatException(record.exc_info)
            message = f"{message}\n{formatted}"
            record.exc_info = None
            record.exc_text = None
        record.msg = self.redactor(message)
        record.args = None
        return True
