"""The ``sql`` sink with ``flavour: dujiaoka``: opens and closes dujiaoka's payment gateways (``pays.is_open``).

dujiaoka has no weights, only a switch: weight 0 closes every ``pays`` row mapped to the channel, any weight above
0 opens them again. Three rules keep this from making things worse:

* **Callbacks keep working.** dujiaoka's notify handlers only accept a callback for an open gateway, so a
  gateway is not closed while it has orders that are not paid (status 1 waiting, or -1 expired: a late callback
  still completes those) created within the callback window (``pay_timeout`` + ``callback_deadline``). The
  sink says it waits, and closes once the window is clear. Right after closing it looks again: an order created
  meanwhile opens the gateway again, and the sink keeps waiting.
* **The operator's switch wins.** paymon records the rows it closes *before* closing them (a crash in between
  only means an extra close later) and only ever opens those; a gateway the operator closed by hand stays
  closed, and one paymon closed that the operator opened again is the operator's from then on.
* **Nothing is lost.** A lost connection is a retryable :class:`~monitor.errors.SinkError`; the routing stage
  tries again next cycle, and every step here can be repeated.

``read`` tells per channel whether any of its gateways is open (1) or none is (0); dujiaoka's ``is_open`` is open
only when it is 1. Timestamps are compared the way dujiaoka writes them: Beijing wall-clock text.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, bindparam, create_engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError

from monitor.errors import SinkError
from monitor.ingest.dujiaoka import BEIJING
from monitor.store import Store

__all__ = ["DujiaokaSink", "UNPAID"]

log = logging.getLogger(__name__)

#: dujiaoka order statuses that a callback may still complete: 1 waiting for payment, -1 expired.
UNPAID = (1, -1)


def _beijing(at: datetime) -> str:
    return at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


class DujiaokaSink:
    """dujiaoka's ``pays`` switch for the channels of ``channels`` (``pays.id`` -> channel id)."""

    readable = True
    switch = True

    def __init__(self, url: str, channels: Mapping[int, str], store: Store, *, windows: Mapping[str, timedelta],
                 table: str = "pays", key_column: str = "id", open_column: str = "is_open") -> None:
        self._url = url
        self.channels = {int(k): v for k, v in channels.items()}
        self.store = store
        #: How long after its creation an unpaid order of each channel may still get its callback.
        self.windows = dict(windows)
        self.key = f"sql-dujiaoka:{make_url(url).render_as_string(hide_password=True)}/{table}"
        self._select = text(f"SELECT {key_column} AS id, {open_column} AS is_open FROM {table} "
                            f"WHERE {key_column} IN :ids").bindparams(bindparam("ids", expanding=True))
        self._set = text(f"UPDATE {table} SET {open_column} = :value "
                         f"WHERE {key_column} IN :ids AND {open_column} = :was").bindparams(
            bindparam("ids", expanding=True))
        self._unpaid = text(
            "SELECT COUNT(*) AS n, CAST(MAX(created_at) AS CHAR) AS newest FROM orders "
            "WHERE pay_id IN :ids AND status IN :unpaid AND deleted_at IS NULL AND created_at >= :since"
        ).bindparams(bindparam("ids", expanding=True), bindparam("unpaid", expanding=True))
        self._engine: Engine | None = None

    def _db(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(self._url, pool_pre_ping=True)
        return self._engine

    def _ids(self, channel: str) -> list[int]:
        return [pay_id for pay_id, ch in self.channels.items() if ch == channel]

    def read(self) -> dict[str, int]:
        """1 for a channel with an open gateway, 0 when all of its gateways are closed (rows missing: left out)."""
        try:
            with self._db().connect() as conn:
                state = {int(r.id): int(r.is_open) for r in conn.execute(self._select, {"ids": list(self.channels)})}
        except SQLAlchemyError as exc:
            raise self._error(exc) from None
        reopened = [pay_id for pay_id in self.store.closed_by_paymon(self.key) if state.get(pay_id) == 1]
        self.store.forget_closed(self.key, reopened)  # opened again by hand: the operator's from now on
        out: dict[str, int] = {}
        for pay_id, channel in self.channels.items():
            if pay_id in state:
                out[channel] = max(out.get(channel, 0), 1 if state[pay_id] == 1 else 0)
        return out

    def apply(self, weights: Mapping[str, int], now: datetime) -> dict[str, str]:
        """Open (weight > 0) or close (0) each channel's gateways; returns the closures that wait, with why."""
        waiting: dict[str, str] = {}
        try:
            closed = self.store.closed_by_paymon(self.key)
            for channel, weight in weights.items():
                if weight > 0:
                    self._open(channel, closed)
                else:
                    why = self._close(channel, now)
                    if why:
                        waiting[channel] = why
        except SQLAlchemyError as exc:
            raise self._error(exc) from None
        return waiting

    def _open(self, channel: str, closed: Mapping[int, str] | None = None) -> None:
        """Open again the gateways of ``channel`` that paymon closed (``closed``: read from the store if None)."""
        if closed is None:
            closed = self.store.closed_by_paymon(self.key)
        mine = [pay_id for pay_id, ch in closed.items() if ch == channel]
        if mine:
            with self._db().begin() as conn:
                conn.execute(self._set, {"ids": mine, "value": 1, "was": 0})
            self.store.forget_closed(self.key, mine)

    def _close(self, channel: str, now: datetime) -> str | None:
        ids = self._ids(channel)
        since = now - self.windows.get(channel, timedelta(0))
        with self._db().connect() as conn:
            why = self._unpaid_orders(conn, ids, since)
            if why:
                return why
            open_ids = [int(r.id) for r in conn.execute(self._select, {"ids": ids}) if int(r.is_open) == 1]
        if not open_ids:
            return None
        self.store.remember_closed(self.key, dict.fromkeys(open_ids, channel), now)
        with self._db().begin() as conn:
            conn.execute(self._set, {"ids": open_ids, "value": 0, "was": 1})
        with self._db().connect() as conn:  # a new snapshot: an order created while we closed
            why = self._unpaid_orders(conn, ids, since)
        if why:
            log.info("routing: %s: an order came in while closing %s; opened again", self.key, channel)
            self._open(channel)
            return why
        return None

    def _unpaid_orders(self, conn: Connection, ids: list[int], since: datetime) -> str | None:
        """Why the gateway cannot close yet (unpaid orders inside the callback window), or None."""
        row = conn.execute(self._unpaid, {"ids": ids, "unpaid": list(UNPAID), "since": _beijing(since)}).one()
        if not row.n:
            return None
        return (f"{row.n} unpaid order(s) may still get their callback (newest created {row.newest} Beijing time); "
                "dujiaoka refuses callbacks for a closed gateway, so it is closed once they are out of the "
                "callback window")

    def _error(self, exc: SQLAlchemyError) -> SinkError:
        return SinkError(f"{self.key}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}", retryable=True)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
