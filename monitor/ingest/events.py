"""Turning one decoded log record into an :class:`~monitor.models.OrderEvent`, or a reason to reject it. Pure.

This runs once per log line (a backfill is millions of them), so it avoids repeated work: amounts are decoded once per
distinct text, and the checks are ordered so that a well-formed record passes each with one lookup.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

from monitor.models import EVENT_KINDS, FUTURE_TOLERANCE, OrderEvent

__all__ = ["FUTURE_TOLERANCE", "Rejected", "parse_event", "parse_time", "remap"]

_EVENTS = frozenset(EVENT_KINDS)
#: The store's ``orders.amount`` column holds this many characters; a longer amount is not a price.
_AMOUNT_CHARS = 32
#: The store's ``orders.channel`` column holds this many characters (checked when no channel list is given).
_CHANNEL_CHARS = 64
#: Amounts already decoded, by their text (a shop has few distinct prices); bounded, and Decimal is immutable.
_AMOUNTS: dict[str, Decimal] = {}
_AMOUNTS_MAX = 4096


class Rejected(ValueError):
    """A record that cannot be used; ``reason`` is a short label counted per source."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_time(value: Any, tz: tzinfo) -> datetime:
    """ISO 8601 text (naive values are in ``tz``) or a Unix timestamp → aware UTC."""
    try:
        if isinstance(value, str):
            try:
                dt = datetime.fromisoformat(value)
            except ValueError:
                dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, tz=UTC)
        else:
            raise Rejected("bad_timestamp")
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=tz)
        return dt.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        # Not a time, or one outside what a datetime can hold (year 0, 1e300, NaN).
        raise Rejected("bad_timestamp") from None


def _amount(value: Any) -> Decimal:
    text = value if isinstance(value, str) else str(value)
    amount = _AMOUNTS.get(text)
    if amount is not None:
        return amount
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise Rejected("bad_amount") from None
    if not amount.is_finite() or len(str(amount)) > _AMOUNT_CHARS:
        raise Rejected("bad_amount")
    if len(_AMOUNTS) < _AMOUNTS_MAX:
        _AMOUNTS[text] = amount
    return amount


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
    """Validate one record; raise :class:`Rejected` with a reason when it cannot be used."""
    get = rec.get
    ts = get("ts")
    event = get("event")
    order_id = get("order_id")
    channel = get("channel")
    if ts is None or ts == "":
        raise Rejected("missing_ts")
    if event is None or event == "":
        raise Rejected("missing_event")
    if order_id is None or order_id == "":
        raise Rejected("missing_order_id")
    if channel is None or channel == "":
        raise Rejected("missing_channel")
    if type(event) is not str or event not in _EVENTS:
        raise Rejected("unknown_event")
    if type(channel) is not str:
        channel = str(channel)
    if (channel not in channels) if channels is not None else len(channel) > _CHANNEL_CHARS:
        raise Rejected("unknown_channel")
    at = parse_time(ts, tz)
    if at > now + FUTURE_TOLERANCE:
        raise Rejected("future_timestamp")
    paid_at = get("paid_at")
    if paid_at is not None:
        paid_at = None if paid_at == "" else parse_time(paid_at, tz)
    amount = get("amount")
    if amount is not None:
        amount = None if amount == "" else _amount(amount)
    verified = get("verified")
    if verified is not None and verified is not True and verified is not False:
        raise Rejected("bad_verified")
    method = get("method")
    trade_no = get("trade_no")
    detail = get("detail")
    return OrderEvent(
        at,
        event,
        (order_id if type(order_id) is str else str(order_id))[:150],
        channel,
        None if method is None else str(method)[:32],
        amount,
        None if trade_no is None or trade_no == "" else str(trade_no)[:200],
        paid_at,
        verified,
        None if detail is None else str(detail)[:500],
    )
