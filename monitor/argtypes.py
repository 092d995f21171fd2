"""Command-line argument checks: a parser whose usage errors are one line, and the value types it checks.

argparse prints a usage dump and the error on separate lines; an operator who typed one wrong value needs the
one line that says which argument and why, with a pointer to ``--help``. Every usage error exits 2.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import NoReturn

from monitor.config.zones import check_zone

__all__ = ["OneLineParser", "port", "positive_float", "positive_rate", "timezone", "weight"]


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are ``<prog>: <message> (see <prog> --help)`` on one line, exit 2.

    Subcommand parsers inherit the class, so ``paymon demo --duration -3`` is reported as ``paymon demo: ...``.
    """

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())  # argparse's own messages may hold newlines
        self.exit(2, f"{self.prog}: {text} (see {self.prog} --help)\n")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise SystemExit(status)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (seconds, durations)."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def positive_rate(text: str) -> float:
    """A finite rate > 0, at most 1000 per second."""
    value = positive_float(text)
    if value > 1000:
        raise argparse.ArgumentTypeError(f"must be at most 1000, got {text}")
    return value


def port(text: str) -> int:
    """A TCP port number, 0-65535 (0: any free port)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text}")
    return value


def timezone(text: str) -> str:
    """An IANA time-zone name; a wrong one is answered with the nearest known zone."""
    try:
        return check_zone(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


#: The largest routing weight an operator may set by hand.
MAX_WEIGHT = 10_000


def weight(text: str) -> int:
    """A routing weight: a whole number from 0 to :data:`MAX_WEIGHT`."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= MAX_WEIGHT:
        raise argparse.ArgumentTypeError(f"must be from 0 to {MAX_WEIGHT}, got {text}")
    return value
