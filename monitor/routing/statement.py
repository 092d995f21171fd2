"""The ``sql`` sink with ``statement:``: one configured ``UPDATE`` per changed channel, for shops other than
dujiaoka (e.g. a weight column in the shop's own gateway table).

The statement is checked when the config loads (:func:`statement_problem`): a single ``UPDATE`` whose only
parameters are ``:channel`` (paymon's channel id) and ``:weight`` (the new weight). The sink cannot read the shop's
weights, so the routing stage remembers which weight it confirmed per channel and writes again what did not land.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from monitor.errors import SinkError

__all__ = ["StatementSink", "statement_problem"]

log = logging.getLogger(__name__)

PARAMETERS = frozenset({"channel", "weight"})
_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`")
_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/|#[^\n]*", re.DOTALL)


def statement_problem(sql: str) -> str | None:
    """Why ``sql`` is not a single UPDATE with exactly ``:channel`` and ``:weight`` (None when it is)."""
    bare = _QUOTED.sub("''", sql)
    if _COMMENT.search(bare):
        return "no comments in the statement, please (write one plain UPDATE)"
    bare = bare.strip().removesuffix(";").strip()
    if ";" in bare:
        return "one statement only (found ';' between statements)"
    if not re.match(r"(?i)update\s", bare):
        return "must be an UPDATE statement"
    try:
        found = set(text(sql.strip().removesuffix(";")).compile().params)
    except (ArgumentError, SQLAlchemyError) as exc:  # pragma: no cover - text() accepts nearly anything
        return f"cannot parse: {exc}"
    if found != PARAMETERS:
        extra = sorted(found - PARAMETERS)
        missing = sorted(PARAMETERS - found)
        parts = ([f"missing {', '.join(':' + p for p in missing)}"] if missing else []) + (
            [f"unknown parameter(s) {', '.join(':' + p for p in extra)}"] if extra else [])
        return "the parameters must be exactly :channel and :weight (" + "; ".join(parts) + ")"
    return None


class StatementSink:
    """Runs the configured UPDATE once per changed channel, all in one transaction."""

    readable = False
    switch = False

    def __init__(self, url: str, statement: str) -> None:
        self._url = url
        self.statement = text(statement.strip().removesuffix(";"))
        shown = make_url(url).render_as_string(hide_password=True)
        self.key = f"sql-statement:{shown}"
        self._engine: Engine | None = None

    def _db(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(self._url, pool_pre_ping=True)
        return self._engine

    def read(self) -> dict[str, int]:
        raise NotImplementedError("a statement sink is write-only")

    def apply(self, weights: Mapping[str, int], now: datetime) -> dict[str, str]:
        """Run the UPDATE for every channel of ``weights``; a channel whose row it does not find waits (the
        shop may not list it yet), the others are applied together."""
        waiting: dict[str, str] = {}
        try:
            with self._db().begin() as conn:
                for channel, weight in weights.items():
                    if conn.execute(self.statement, {"channel": channel, "weight": weight}).rowcount == 0:
                        waiting[channel] = "the configured UPDATE matched no row for this channel"
        except SQLAlchemyError as exc:
            raise SinkError(f"{self.key}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                            retryable=True) from None
        return waiting

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
