"""epay V1 (彩虹易支付, MD5) order lookups through ``api.php``, and notify replay.

**Lookup.** ``status`` says the order's state (:data:`STATES`): 1 ``paid``, 2 ``refunded`` (the buyer has the money
back), 3 已冻结 (EP-old and EP-new) and 4 预授权 (EP-new: a capture after a pre-authorisation failed) ``held``
(the channel holds the buyer's money, the payment is not complete: no pay time, no notify), 0 ``unpaid``, anything
else ``unknown``. ``paid_at``, for a paid order only, is ``endtime`` read in the channel's ``timezone`` (epay
writes MySQL ``NOW()`` wall-clock time, Asia/Shanghai by default) and turned into aware UTC, or None when
epay gives none (never a made-up time); ``amount`` is
``money`` (a decimal string, or a number on some hosts); ``trade_no`` is epay's own number. ``code -1
订单号不存在`` is ``found`` False (an order never opened, or unpaid and purged after 24 h). A -1 saying 维护/繁忙,
an auth error (EP-old -2/-3, EP-new -3), HTTP errors, bodies that are not JSON and timeouts are
:class:`~monitor.clients.base.ProbeFailure`, judged by the client's rules (:func:`~monitor.clients.epay.fail_on_code`).

**Batching.** The obvious batch is ``act=orders&limit=50&status=1`` joined on ``out_trade_no``. That cannot
tell an *unpaid* or *unknown* order on its own, and it is not the same call on both servers: EP-old ignores
``status`` and ``offset`` (every request gets the newest page again), and a query that matches no row is HTTP 500
with an empty body, which looks exactly like a broken server. Nor can "the page reaches back far enough"
be proven: the contract gives ids, not the times the orders were opened at epay, and a server that silently
caps ``limit`` lower would make "fewer rows than asked" a false proof of completeness. So one :meth:`lookup` of
several ids does this, identically on both flavours:

1. one ``act=orders&limit=50`` without ``status`` or ``offset`` (the newest 50 orders, any status): every
   candidate listed there is answered from its row, which is the same ``pre_order`` row ``act=order`` returns;
2. every candidate *not* listed is asked with ``act=order&out_trade_no=…``, one by one. Absence from the page is
   never taken to mean anything.

A small shop's newest 50 epay orders cover hours, so most rounds cost one request; a busy one costs one extra
request per 50 ids. When the page itself fails with an HTTP error or a body that is not JSON (the empty-list 500
among them), the per-id queries decide: they give the answer or the real failure. A maintenance answer, an auth
error, a timeout or a refused connection on the page ends the call at once. One id alone skips the page. If
``out_trade_no`` shows up in several rows (re-opened after epay's 10-day window), a row whose money reached
epay (1-4) wins over an unpaid one.

**Replay** (:meth:`EpayQuerier.replay`): the V1 notify epay itself would send: GET ``notify_url`` +
``pid, trade_no, out_trade_no, type, name, money`` (printed as PHP's ``(float)``), ``trade_status=TRADE_SUCCESS``,
``param`` when non-empty, ``sign``, ``sign_type=MD5``, with epay's curl headers (Chrome-78 User-Agent), a 5 s
timeout and no redirect following. ``name`` is sent as epay stored it (htmlspecialchars'd), which is what
epay's own notify carries. Acknowledged ⇔ the body contains ``success``/``SUCCESS``/``Success``, whatever the
status. Only ``status`` 1 is replayed: a refunded, frozen or pre-authorised order is reported back unsent rather
than delivered against money the merchant does not hold. Wire faults are a :class:`ReplayResult` with
``status_code`` None; details never carry the key or the signature.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

import httpx

from monitor.clients.base import MAX_BODY, ProbeContext, ProbeFailure, decimal_field
from monitor.clients.epay import EpayClient, fail_on_code, is_not_found, reply_code
from monitor.protocols import epay as v1
from monitor.reconcile.base import ChannelOrder, GatewayQuerier, ReplayResult

__all__ = ["PAGE", "PAID_STATUSES", "ROW_FIELDS", "STATES", "EpayQuerier", "deliver_notify", "order_from_row"]

#: Rows ``act=orders`` returns at most (both servers cap ``limit`` at 50): also the ids one lookup is given.
PAGE = 50
#: What each epay ``status`` means for the shop (any other number is ``unknown``).
STATES: dict[int, str] = {
    v1.STATUS_UNPAID: "unpaid",
    v1.STATUS_PAID: "paid",
    v1.STATUS_REFUNDED: "refunded",
    v1.STATUS_FROZEN: "held",
    v1.STATUS_PREAUTH: "held",
}
#: Statuses meaning the buyer's money reached epay at some point: a row in one of these wins over an unpaid row of
#: the same ``out_trade_no``. Only 1 is plainly paid.
PAID_STATUSES: frozenset[int] = v1.PAID_STATUSES | {v1.STATUS_PREAUTH}
#: Fields of an order row kept in :attr:`ChannelOrder.fields` (what a V1 notify replay needs, plus details).
ROW_FIELDS = ("type", "name", "money", "trade_no", "param", "api_trade_no")
#: Soft failures of the ``act=orders`` page: the per-id queries then give the answer or the real fault.
_PAGE_FALLBACK = frozenset({"http_error", "bad_response"})


def order_from_row(order_id: str, row: Mapping[str, Any], tz: tzinfo) -> ChannelOrder:
    """A found order from an epay order row (``act=order``, an ``act=orders`` row, V2 ``api/pay/query``).

    ``status`` must be a number (or a numeric string), else ``bad_response``; so must ``money`` when given.
    """
    state = v1.coerce_int(row.get("status"))
    if state is None:
        raise ProbeFailure("bad_response", f"order {order_id}: status {str(row.get('status'))[:20]!r} is not a number")
    money = row.get("money")
    amount = None if money is None or str(money).strip() == "" else decimal_field(money, f"order {order_id} money")
    meaning = STATES.get(state, "unknown")
    return ChannelOrder(
        order_id=order_id,
        found=True,
        state=meaning,
        paid_at=_epay_time(row.get("endtime"), tz) if meaning == "paid" else None,
        trade_no=str(row.get("trade_no") or "").strip() or None,
        amount=amount,
        status=str(state),
        fields={k: str(row[k]) for k in ROW_FIELDS if row.get(k) is not None and str(row[k]) != ""},
    )


def _epay_time(value: object, tz: tzinfo) -> datetime | None:
    """An epay ``'Y-m-d H:i:s'`` wall-clock time in ``tz`` as aware UTC; None when absent or malformed."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return v1.parse_epay_time(value, tz).astimezone(UTC)
    except ValueError:
        return None


class EpayQuerier(GatewayQuerier[EpayClient]):
    """Order lookups and notify replay for a channel of ``kind: epay`` (credentials ``pid``, ``key``)."""

    kind = "epay"
    batch = PAGE
    client_class = EpayClient

    async def lookup(self, order_ids: Sequence[str], ctx: ProbeContext) -> dict[str, ChannelOrder]:
        """What epay says about each id: answered from the newest page when listed there, else one by one."""
        wanted = list(dict.fromkeys(order_ids))
        listed = await self._page(ctx) if len(wanted) > 1 else {}
        answers: dict[str, ChannelOrder] = {}
        for order_id in wanted:
            row = listed.get(order_id)
            answers[order_id] = (order_from_row(order_id, row, self.client.tz) if row is not None
                                 else await self.lookup_one(order_id, ctx))
        return answers

    async def _page(self, ctx: ProbeContext) -> dict[str, dict[str, Any]]:
        """The newest ``PAGE`` orders by ``out_trade_no`` (a paid row wins); {} when the page failed softly."""
        try:
            _, doc = await self.client.api(ctx, self.timeout, "orders", limit=str(PAGE))
        except ProbeFailure as failure:
            if failure.outcome in _PAGE_FALLBACK:
                return {}
            raise failure.prefixed("act=orders") from None
        if reply_code(doc) != str(v1.CODE_OK):
            raise fail_on_code(doc, "act=orders")
        data = doc.get("data")
        rows = list(data.values()) if isinstance(data, dict) else data if isinstance(data, list) else []
        listed: dict[str, dict[str, Any]] = {}
        for row in rows:
            if not isinstance(row, dict) or row.get("out_trade_no") is None:
                continue
            out_trade_no = str(row["out_trade_no"])
            kept = listed.get(out_trade_no)
            if kept is None or (v1.coerce_int(row.get("status")) in PAID_STATUSES
                                and v1.coerce_int(kept.get("status")) not in PAID_STATUSES):
                listed[out_trade_no] = row
        return listed

    async def lookup_one(self, order_id: str, ctx: ProbeContext) -> ChannelOrder:
        """``act=order&out_trade_no=…``: the order, or ``found`` False for 订单号不存在."""
        try:
            _, doc = await self.client.api(ctx, self.timeout, "order", out_trade_no=order_id)
        except ProbeFailure as failure:
            raise failure.prefixed("act=order") from None
        if reply_code(doc) == str(v1.CODE_OK):
            got = str(doc.get("out_trade_no", ""))
            if got != order_id:
                raise ProbeFailure("bad_response", f"act=order: asked for {order_id}, the answer is about {got[:40]!r}")
            return order_from_row(order_id, doc, self.client.tz)
        if is_not_found(doc):
            return ChannelOrder(order_id, found=False)
        raise fail_on_code(doc, "act=order")

    async def replay(self, order: ChannelOrder, notify_url: str, ctx: ProbeContext) -> ReplayResult:
        """GET the signed V1 notify of a paid (status 1) order to ``notify_url`` as epay's curl would."""
        fields = order.fields
        if not order.paid or order.status != str(v1.STATUS_PAID):
            return ReplayResult(None, False, f"not sent: order {order.order_id} is not plainly paid "
                                             f"(status {order.status or '?'})", sent=False)
        missing = [name for name in ("trade_no", "type", "money") if not fields.get(name)]
        if missing:
            return ReplayResult(None, False, f"not sent: the lookup gave no {', '.join(missing)}", sent=False)
        key = self.client.key.reveal()
        try:
            params = v1.notify_params(pid=self.client.pid.reveal(), trade_no=fields["trade_no"],
                                      out_trade_no=order.order_id, type=fields["type"], name=fields.get("name", ""),
                                      money=fields["money"], key=key, param=fields.get("param"))
        except ValueError:
            return ReplayResult(None, False, f"not sent: money {fields['money'][:20]!r} is not an amount",
                                sent=False)
        return await deliver_notify(
            ctx, "GET", v1.url_with_query(notify_url, params), headers=v1.NOTIFY_HEADERS,
            timeout=v1.NOTIFY_TIMEOUT_S, ack=lambda status, body: v1.is_notify_ack(body), hide=(key, params["sign"]),
        )


async def deliver_notify(
    ctx: ProbeContext,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    timeout: float,
    ack: Callable[[int, str], bool],
    content: bytes | None = None,
    hide: Iterable[str] = (),
) -> ReplayResult:
    """Send one notify to a shop under a hard deadline, never following redirects, and judge the answer with
    ``ack(status, body)``. Never raises for wire faults (they are ``status_code`` None). Every value in ``hide``
    (the key, the signature) is masked in the detail, which the context's redactor also scrubs."""
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async with ctx.client.stream(method, url, headers=dict(headers), content=content, timeout=timeout,
                                         follow_redirects=False) as resp:
                async for chunk in resp.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY:
                        break
                status, location = resp.status_code, resp.headers.get("location")
    except TimeoutError:
        return ReplayResult(None, False, f"no answer within {timeout:g}s")
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return ReplayResult(None, False, _scrub(ctx, f"{type(exc).__name__}: {exc}", hide))
    text = bytes(body[:MAX_BODY]).decode("utf-8", errors="replace")
    acknowledged = ack(status, text)
    # Scrub before cutting: a cut could leave part of a secret that no longer matches the mask.
    snippet = " ".join(_scrub(ctx, text, hide).split())[:80]
    detail = f"HTTP {status}, {'acknowledged' if acknowledged else 'not acknowledged'}: {snippet!r}"
    if location and 300 <= status < 400:
        detail += f" (redirect to {_without_query(location)}, not followed)"
    return ReplayResult(status, acknowledged, _scrub(ctx, detail, hide))


def _without_query(url: str) -> str:
    """A URL without its query and fragment (a redirect keeps the notify's signed query)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))[:120]


def _scrub(ctx: ProbeContext, text: str, hide: Iterable[str]) -> str:
    """``text`` with every hidden value (raw and URL-encoded) masked, then through the context's redactor."""
    for value in filter(None, hide):
        for form in {value, quote(value, safe=""), quote_plus(value)}:
            text = text.replace(form, "***")
    return ctx.redactor(text)
