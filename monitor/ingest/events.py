"""Turning one decoded log record into an :class:`~monitor.models.OrderEvent`, or a reason to reject it. Pure."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

from monitor.clock import utc
from monitor.models import EVENT_KINDS, OrderEvent

__all__ = ["FUTURE_TOLERANCE", "Rejected", "parse_event", "parse_time", "remap"]

#: Timestamps further ahead of the clock than this are rejected (a wrong clock or a wrong timezone).
FUTURE_TOLERANCE = timedelta(minutes=5)
_EVENTS = frozenset(EVENT_KINDS)


class Rejected(ValueError):
    """A record that cannot be used; ``reason`` is a short label counted per source."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_time(value: Any, tz: tzinfo) -> datetime:
    """ISO 8601 text (naive values are in ``tz``) or a Unix timestamp → aware UTC."""
    if isinstance(value, bool):
        raise Rejected("bad_timestamp")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, tz=UTC)
    if not isinstance(value, str):
        raise Rejected("bad_timestamp")
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Rejected("bad_timestamp") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return utc(dt)


def remap(rec: Mapping[str, Any], fields: Mapping[str, str]) -> dict[str, Any]:
    """Rename a shop's own field names to ours (``fields`` maps our name -> the shop's name)."""
    out = dict(rec)
    for ours, theirs in fields.items():
        if theirs in rec:
            out[ours] = rec[theirs]
    return out


def parse_event(
    rec: Mapping[str, Any], *, tz: tzinfo, now: datetime, channels: Collection[str] | None = None
) -> OrderEvent:
    """Validate one record (SPEC §2.7); raise :class:`Rejected` with a reason when it cannot be used."""
    for name in ("ts", "event", "order_id", "channel"):
        if rec.get(name) in (None, ""):
            raise Rejected(f"missing_{name}")
    event = rec["event"]
    if event not in _EVENTS:
        raise Rejected("unknown_event")
    channel = str(rec["channel"])
    if channels is not None and channel not in channels:
        raise Rejected("unknown_channel")
    ts = parse_time(rec["ts"], tz)
    if ts > now + FUTURE_TOLERANCE:
        raise Rejected("future_timestamp")
    paid_at = parse_time(rec["paid_at"], tz) if rec.get("paid_at") not in (None, "") else None
    amount = None
    if rec.get("amount") not in (None, ""):
        try:
            amount = Decimal(str(rec["amount"]))
        except InvalidOperation:
            raise Rejected("bad_amount") from None
        if not amount.is_finite():
            raise Rejected("bad_amount")
    verified = rec.get("verified")
    if verified is not None and not isinstance(verified, bool):
        raise Rejected("bad_verified")
    return OrderEvent(
        ts=ts,
        event=event,
        order_id=str(rec["order_id"])[:150],
        channel=channel,
        method=None if rec.get("method") is None else str(rec["method"])[:32],
        amount=amount,
        trade_no=None if rec.get("trade_no") in (None, "") else str(rec["trade_no"])[:200],
        paid_at=paid_at,
        verified=verified,
        detail=None if rec.get("detail") is None else str(rec["detail"])[:500],
    )
