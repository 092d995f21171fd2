"""epay V1 (彩虹易支付, MD5) probes: ``query``, ``test_order`` and ``balance``.

- ``query`` first reads the merchant's standing with ``api.php?act=query`` (one cheap call that also checks the
  key): a banned merchant (``active`` 0) still gets normal ``act=order`` answers on EP-old and EP-new, so without
  this a banned merchant looked healthy. Then it asks ``act=order`` about the order
  :meth:`~monitor.probes.base.ProbeAdapter.order_to_query` gives (the last test order, else a recent one from the
  store), else a sentinel ``out_trade_no`` no shop uses. Code 1 with the asked ``out_trade_no`` (found) or code -1
  订单号不存在 (the expected answer for the sentinel) is ``ok``.
- ``test_order`` POSTs a signed ``mapi.php`` order for ``probes.test_order.amount`` (money printed as
  PHP does, :func:`~monitor.protocols.epay.format_money`), ``type=alipay``, a fresh ``paymon-probe-…``
  ``out_trade_no`` and a harmless loopback notify/return URL; ``ok`` is code 1 with a ``trade_no`` and a
  ``payurl``/``qrcode``/``urlscheme``/``html``. The order is never paid. epay has no API to close an order: it
  stays unpaid until the site's cron deletes it (24 h); the detail says so when ``close`` is set.
- ``balance`` reads ``act=query`` (balance ``money``, ``active``) and ``act=settle`` (``data`` null = no record;
  EP-old doubles every column under numeric keys). The value is the unsettled balance; the detail names
  the last completed settlement and flags a stall: a settlement 待结算/正在结算 for more than
  :data:`STUCK_AFTER`, or money waiting with no completed settlement (none at all, or none for
  :data:`STALE_AFTER`). A stall is reported in the detail; the outcome stays ``ok``.

Outcomes: the client's (:mod:`monitor.clients.epay`: unsigned replies, so no ``bad_signature``; 维护/繁忙 is
``maintenance``, other codes ``business_error`` with the gateway's code and message); a banned merchant
(``active`` 0, or a create refused with 商户已封禁) is ``business_error`` with code ``merchant_banned`` (the
``merchant_banned`` signal). The key travels in the ``api.php`` URL and is echoed in
``act=query``/``act=settle``: details are built from chosen fields only, never from the body.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from monitor.clients.base import Deadline
from monitor.clients.epay import EpayClient, banned, fail_on_code, is_maintenance, reply_code, reply_msg
from monitor.config.channels import TestOrderProbe
from monitor.probes.base import (
    Observation,
    ProbeAdapter,
    ProbeContext,
    ProbeFailure,
    decimal_field,
    handles,
    new_out_trade_no,
    probe_timeout,
)
from monitor.protocols import epay as v1

__all__ = ["PLACEHOLDER_URL", "SENTINEL", "STALE_AFTER", "STUCK_AFTER", "EpayAdapter"]

#: An out_trade_no no shop ever uses; the gateway must say it does not exist.
SENTINEL = "paymon-probe-sentinel"
#: notify_url / return_url of test orders: never paid, so never called; loopback in case a gateway tries.
PLACEHOLDER_URL = "http://127.0.0.1/paymon-probe"
#: A settlement 待结算 (0) / 正在结算 (2) for longer than this is stuck.
STUCK_AFTER = timedelta(days=1)
#: Money waiting and no settlement completed for this long (T+1 settles daily) is a stall.
STALE_AFTER = timedelta(days=2)
_PAY_FIELDS = ("payurl", "qrcode", "urlscheme", "html")
_SETTLE_NAMES = {0: "待结算", 1: "已完成", 2: "正在结算", 3: "结算失败"}


class EpayAdapter(ProbeAdapter[EpayClient]):
    """Probes for a channel of ``kind: epay``."""

    kind = "epay"
    client_class = EpayClient

    @handles("query")
    async def _query(self, ctx: ProbeContext) -> Observation:
        deadline = Deadline(probe_timeout(self.channel.probes.query, 5.0))
        _, info = await self.client.api(ctx, deadline.left(), "query")
        standing = self._standing(info)
        wanted = await self.order_to_query(ctx)
        asked = wanted or SENTINEL
        status, doc = await self.client.api(ctx, deadline.left(), "order", out_trade_no=asked)
        code, msg = reply_code(doc), reply_msg(doc)
        if code == "1":
            got = str(doc.get("out_trade_no", ""))
            if got != asked:
                raise ProbeFailure("bad_response", f"asked for order {asked}, the answer is about {got[:40]!r}")
            state = v1.coerce_int(doc.get("status"))
            name = "status unknown" if state is None else v1.STATUS_NAMES.get(state, f"status {state}")
            return Observation(code, f"HTTP {status}, code 1: {self.order_source(wanted)} {asked} found ({name}); "
                                     f"{standing}")
        if code == "-1" and not is_maintenance(msg):
            note = "" if wanted is None else f" ({self.order_source(wanted)} {asked} is unknown to the gateway)"
            return Observation(code, f"HTTP {status}, code -1 {msg}{note}; {standing}".strip())
        raise fail_on_code(doc, "act=order")

    @staticmethod
    def _standing(info: dict[str, Any]) -> str:
        """The merchant's standing from an ``act=query`` answer: a failure when it is an error or says banned
        (``active`` 0); otherwise a few words for the detail. Only chosen fields are read (it echoes the key)."""
        if reply_code(info) != "1":
            raise fail_on_code(info, "act=query")
        active = v1.coerce_int(info.get("active"))
        if active == 0:
            raise banned("act=query", "active 0")
        return "merchant active" if active == 1 else "merchant standing unknown (no active flag)"

    @handles("test_order")
    async def _test_order(self, ctx: ProbeContext) -> Observation:
        spec = self.channel.probes.test_order or TestOrderProbe()
        out_trade_no = new_out_trade_no(ctx)
        order = {
            "type": "alipay", "out_trade_no": out_trade_no,
            "notify_url": PLACEHOLDER_URL, "return_url": PLACEHOLDER_URL, "name": "paymon probe",
            "money": v1.format_money(spec.amount), "clientip": "127.0.0.1", "device": "pc",
        }
        try:
            status, doc = await self.client.mapi(ctx, spec.timeout.total_seconds(), order)
        except ProbeFailure as failure:
            raise self.failed_create(out_trade_no, failure) from None
        code = reply_code(doc)
        if code != "1":
            raise fail_on_code(doc, "mapi.php")
        trade_no = str(doc.get("trade_no") or "").strip()
        where = next((f for f in _PAY_FIELDS if str(doc.get(f) or "").strip()), None)
        if not trade_no:
            if "cashier.php" in str(doc.get("payurl", "")):
                raise ProbeFailure("business_error", "mapi.php: no payment channel for type alipay (sent to the "
                                   "cashier page, no trade_no)", code=code)
            raise ProbeFailure("bad_response", "mapi.php: code 1 without a trade_no")
        self.remember_order(out_trade_no)  # the gateway made it (it has a trade_no), whatever else is missing
        if where is None:
            raise ProbeFailure("bad_response", f"mapi.php: order {out_trade_no} (trade_no {trade_no}) has no "
                                               "payurl/qrcode/urlscheme")
        note = "; epay cannot close orders, it stays unpaid until the site purges it" if spec.close else ""
        return Observation(code, f"HTTP {status}, code 1: order {out_trade_no} (trade_no {trade_no}, "
                                 f"{v1.format_money(spec.amount)}) created with a {where}{note}")

    @handles("balance")
    async def _balance(self, ctx: ProbeContext) -> Observation:
        timeout = probe_timeout(self.channel.probes.balance, 5.0)
        _, info = await self.client.api(ctx, timeout, "query")
        if reply_code(info) != "1":
            raise fail_on_code(info, "act=query")
        if "money" not in info:
            raise ProbeFailure("bad_response", "act=query: answer has no 'money' field")
        money = decimal_field(info["money"], "act=query money")
        if v1.coerce_int(info.get("active")) == 0:
            raise banned("act=query", f"active 0; balance {money}")
        status, settle = await self.client.api(ctx, timeout, "settle")
        if reply_code(settle) != "1":
            raise fail_on_code(settle, "act=settle")
        rows = _settle_rows(settle.get("data"))
        detail = f"HTTP {status}, unsettled balance {money}; " + self._settlement_report(rows, money, ctx.clock.now())
        return Observation("1", detail, float(money))

    def _settlement_report(self, rows: list[dict[str, Any]], money: Decimal, now: datetime) -> str:
        """Last completed settlement, and a STALL note when settlements are stuck or missing."""
        parts: list[str] = []
        stalls: list[str] = []
        done = [r for r in rows if v1.coerce_int(r.get("status")) == 1]
        last = max(done, key=lambda r: str(r.get("endtime") or r.get("addtime") or ""), default=None)
        if last is None:
            parts.append(f"no completed settlement in the last {len(rows)} records" if rows
                         else "no settlement records")
            if money > 0:
                stalls.append(f"{money} waiting and no completed settlement")
        else:
            when = str(last.get("endtime") or last.get("addtime") or "?")
            parts.append(f"last completed settlement {when} ({str(last.get('money', '?'))[:16]})")
            age = self._age(when, now)
            if money > 0 and age is not None and age > STALE_AFTER:
                stalls.append(f"{money} waiting and nothing settled for {_hours(age)}")
        for row in rows:
            state = v1.coerce_int(row.get("status"))
            if state in (0, 2):
                since = str(row.get("addtime") or "?")
                age = self._age(since, now)
                text = f"settlement #{str(row.get('id', '?'))[:12]} {_SETTLE_NAMES[state]} since {since}"
                if age is not None and age > STUCK_AFTER:
                    stalls.append(f"{text} ({_hours(age)})")
                else:
                    parts.append(text)
            elif state == 3:
                parts.append(f"settlement #{str(row.get('id', '?'))[:12]} failed (结算失败)")
        if stalls:
            parts.append("settlement STALL: " + "; ".join(stalls))
        return "; ".join(parts)

    def _age(self, text: str, now: datetime) -> timedelta | None:
        try:
            return now - v1.parse_epay_time(text, self.client.tz)
        except ValueError:
            return None


def _hours(age: timedelta) -> str:
    return f"{age.total_seconds() / 3600:.0f} h"


def _settle_rows(data: Any) -> list[dict[str, Any]]:
    """``act=settle`` ``data``: null (none), a list of rows, or (json_encode of a non-list array) an object."""
    if data is None:
        return []
    if isinstance(data, dict):
        data = list(data.values())
    if not isinstance(data, list):
        raise ProbeFailure("bad_response", f"act=settle: data is a {type(data).__name__}, not a list")
    return [row for row in data if isinstance(row, dict)]
