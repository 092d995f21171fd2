"""The ``nginx`` source: the shop's access log, read for hits on the configured callback URLs.

Each line is parsed with nginx's ``combined`` format (or the ``pattern`` given, a regular expression with the
named groups ``time``, ``request`` and ``status``). A request whose path (query string removed) is one of the
``callbacks`` paths is a notify delivery to that channel; the order is named by the first of ``out_trade_no``,
``order_id``, ``orderid`` or ``token`` in the query string (epay and V免签 notify by GET, so the order id is in the
log; a POST notify's body is not, and such a hit is counted as rejected with reason ``no_order_id``). A 2xx answer
counts as a callback the shop received and accepted (``callback_received``, verified); any other status as a
failed delivery (``callback_received``, unverified): evidence that the channel says the order is paid while the shop
did not take it, which the lost-order numbers count. Other requests are skipped silently (reason ``not_a_callback``
in the counts). Following the file, rotation and checkpoints work exactly as for the ``jsonl`` source.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from monitor.clock import Clock, utc
from monitor.ingest.events import FUTURE_TOLERANCE, Rejected
from monitor.ingest.jsonl import JsonlSource
from monitor.models import OrderEvent
from monitor.store import Store

__all__ = ["COMBINED", "NginxSource"]

#: nginx's default ``combined`` log format.
COMBINED = (r'(?P<remote>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<request>[^"]*)" (?P<status>\d{3}) '
            r'(?P<bytes>\S+)(?: "(?P<referer>[^"]*)" "(?P<agent>[^"]*)")?')
_ORDER_KEYS = ("out_trade_no", "order_id", "orderid", "token")


class NginxSource(JsonlSource):
    """Callback hits in an nginx access log, as order events."""

    kind = "nginx"

    def __init__(self, *, source_id: str, path: str | Path, timezone: str, store: Store, clock: Clock,
                 callbacks: Mapping[str, str], channels: Collection[str] | None = None,
                 pattern: str | None = None, batch_lines: int = 5000, complete: bool = False) -> None:
        super().__init__(source_id=source_id, path=path, timezone=timezone, store=store, clock=clock,
                         channels=channels, batch_lines=batch_lines, complete=complete)
        self.callbacks = {p.rstrip("/") or "/": ch for p, ch in callbacks.items()}
        self.pattern = re.compile(pattern or COMBINED)

    def parse_line(self, text: str, now: datetime) -> OrderEvent:
        m = self.pattern.match(text)
        if m is None:
            raise Rejected("bad_line")
        parts = m.group("request").split(" ")
        if len(parts) < 2:
            raise Rejected("bad_request")
        url = urlsplit(parts[1])
        channel = self.callbacks.get(url.path.rstrip("/") or "/")
        if channel is None:
            raise Rejected("not_a_callback")
        if self.channels is not None and channel not in self.channels:
            raise Rejected("unknown_channel")
        query = parse_qs(url.query)
        order_id = next((query[k][0] for k in _ORDER_KEYS if query.get(k) and query[k][0]), None)
        if order_id is None:
            raise Rejected("no_order_id")
        try:
            ts = datetime.strptime(m.group("time"), "%d/%b/%Y:%H:%M:%S %z")
        except ValueError:
            raise Rejected("bad_timestamp") from None
        if utc(ts) > now + FUTURE_TOLERANCE:
            raise Rejected("future_timestamp")
        accepted = 200 <= int(m.group("status")) < 300
        trade = query.get("trade_no", [None])[0]
        return OrderEvent(ts=utc(ts), event="callback_received", order_id=order_id[:150], channel=channel,
                          trade_no=trade, verified=accepted,
                          detail=None if accepted else f"HTTP {m.group('status')} to the notify")
