"""Probe results: every probe call and how it ended, appended as they come and read back for rules and status; and
the one thing probes read from the orders: a recent paid order their ``query`` can ask the gateway about."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, or_, select

from monitor.models import ProbeResult
from monitor.store import tables as t
from monitor.store.facet import Facet

__all__ = ["ProbesFacet"]


class ProbesFacet(Facet):
    """Appending probe results and the three ways they are read: a window, the newest, the failure streak."""

    def newest_paid_order(self, channel: str) -> tuple[str, datetime] | None:
        """The channel's newest order with a verified callback, and when the callback came; None when it has none.
        The gateway knows such an order for good (it was paid; epay purges only unpaid orders), so a query probe
        can ask about it and get a signed answer."""
        o = t.orders
        q = (select(o.c.order_id, o.c.callback_at)
             .where(o.c.channel == channel, o.c.callback_at.is_not(None))
             .order_by(o.c.created_at.desc()).limit(1))
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return None if row is None else (str(row.order_id), row.callback_at)

    def add_probe_results(self, results: Iterable[ProbeResult]) -> None:
        rows = [
            {
                "channel": r.channel,
                "probe": r.probe,
                "outcome": r.outcome,
                "latency_s": r.latency_s,
                "started_at": r.started_at,
                "code": r.code,
                "detail": r.detail,
                "value": r.value,
            }
            for r in results
        ]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(t.probe_results), rows)

    def probe_results(
        self, *, channel: str | None = None, probe: str | None = None, since: datetime | None = None,
        limit: int | None = None,
    ) -> list[ProbeResult]:
        """Probe results, newest first."""
        q = select(t.probe_results).order_by(t.probe_results.c.started_at.desc(), t.probe_results.c.id.desc())
        if channel is not None:
            q = q.where(t.probe_results.c.channel == channel)
        if probe is not None:
            q = q.where(t.probe_results.c.probe == probe)
        if since is not None:
            q = q.where(t.probe_results.c.started_at >= since)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [_probe(r._mapping) for r in conn.execute(q)]

    def last_probes(self) -> dict[tuple[str, str], ProbeResult]:
        """The newest result of every (channel, probe)."""
        p = t.probe_results
        newest = (
            select(p.c.channel, p.c.probe, func.max(p.c.id).label("id")).group_by(p.c.channel, p.c.probe).subquery()
        )
        q = select(p).join(newest, p.c.id == newest.c.id)
        with self.engine.connect() as conn:
            return {(r.channel, r.probe): _probe(r._mapping) for r in conn.execute(q)}

    def probe_failures_in_a_row(self) -> dict[tuple[str, str], int]:
        """For every (channel, probe): how many of the newest results in a row are not ``ok``."""
        p = t.probe_results
        last_ok = (
            select(p.c.channel, p.c.probe, func.max(p.c.id).label("ok_id"))
            .where(p.c.outcome == "ok")
            .group_by(p.c.channel, p.c.probe)
            .subquery()
        )
        q = (
            select(p.c.channel, p.c.probe, func.count(p.c.id))
            .select_from(p.outerjoin(last_ok, and_(p.c.channel == last_ok.c.channel, p.c.probe == last_ok.c.probe)))
            .where(or_(last_ok.c.ok_id.is_(None), p.c.id > last_ok.c.ok_id))
            .group_by(p.c.channel, p.c.probe)
        )
        out: dict[tuple[str, str], int] = {}
        with self.engine.connect() as conn:
            for channel, probe, n in conn.execute(q):
                out[(channel, probe)] = int(n)
            seen = conn.execute(select(p.c.channel, p.c.probe).distinct()).all()
        for channel, probe in seen:
            out.setdefault((channel, probe), 0)
        return out


def _probe(m: Any) -> ProbeResult:
    return ProbeResult(m["channel"], m["probe"], m["outcome"], m["latency_s"], m["started_at"], m["detail"], m["code"],
                       m["value"])
