"""PayPal probes (OAuth client credentials + Orders v2): ``query`` shows an order, ``test_order`` creates one.

Every call goes through :class:`~monitor.clients.paypal.PayPalClient` (Orders v2 as the simulator serves it),
which holds the OAuth client-credentials token: cached until shortly before it expires, dropped
and fetched again once when PayPal answers a call with 401 ``AUTHENTICATION_FAILURE``.

- ``query``: ``GET v2/checkout/orders/{id}`` for the last order this adapter created, else for the sentinel
  ``PAYMONPROBE000000``. The order with that id, or the 404 ``RESOURCE_NOT_FOUND`` error, is ``ok``.
- ``test_order``: ``POST v2/checkout/orders`` (intent ``CAPTURE``, ``probes.test_order.amount``, default 0.01,
  rounded up to the currency's precision, in the channel's ``currency``, uppercase; default USD, which every
  PayPal account accepts; a fresh ``PayPal-Request-Id``), then checks for the order id, status ``CREATED`` (or
  ``PAYER_ACTION_REQUIRED``) and an ``approve`` (or ``payer-action``) link. It is never approved nor captured.
  Orders v2 has no cancel for an order the buyer has not approved (it expires by itself), so
  ``probes.test_order.close`` has nothing to do here. For the same reason a create that timed out after PayPal
  made the order leaves nothing to clean up: the order can only be paid through its approve link, which paymon
  never shows anyone, and it expires unapproved, as every test order here does.

Outcomes: the client's (no ``bad_signature``; ``invalid_client`` is ``business_error``, 503
``SERVICE_UNAVAILABLE`` ``maintenance``, other 4xx ``business_error``, other 5xx ``http_error``); a 2xx body
without the expected fields is ``bad_response``.
"""

from __future__ import annotations

import secrets
from decimal import Decimal

from monitor.clients.base import Deadline
from monitor.clients.paypal import PayPalClient
from monitor.probes.base import Observation, ProbeAdapter, ProbeContext, ProbeFailure, handles, probe_timeout
from monitor.protocols.paypal import charge_value

__all__ = ["SENTINEL", "PayPalAdapter"]

#: An order id no app has: PayPal must answer ``RESOURCE_NOT_FOUND``.
SENTINEL = "PAYMONPROBE000000"
_DEFAULT_TIMEOUT = 10.0


class PayPalAdapter(ProbeAdapter[PayPalClient]):
    """Probes for a channel of ``kind: paypal`` (credentials: ``client_id``, ``client_secret`` of a REST app)."""

    kind = "paypal"
    client_class = PayPalClient

    @handles("query")
    async def _query(self, ctx: ProbeContext) -> Observation:
        deadline = Deadline(probe_timeout(self.channel.probes.query, _DEFAULT_TIMEOUT))
        order_id = self.last_order or SENTINEL
        status_code, status = await self.client.show_order(ctx, order_id, deadline)
        if status is None:
            return Observation("RESOURCE_NOT_FOUND", f"HTTP 404 RESOURCE_NOT_FOUND for {order_id}, as expected")
        return Observation(status, f"HTTP {status_code}, order {order_id} is {status}")

    @handles("test_order")
    async def _test_order(self, ctx: ProbeContext) -> Observation:
        spec = self.channel.probes.test_order
        deadline = Deadline(probe_timeout(spec, _DEFAULT_TIMEOUT))
        currency = (self.channel.currency or "USD").upper()
        value = charge_value(spec.amount if spec is not None else Decimal("0.01"), currency)
        body = {"intent": "CAPTURE", "purchase_units": [{
            "reference_id": "paymon-probe", "custom_id": "paymon-probe-" + secrets.token_hex(8),
            "description": "paymon probe (never paid)", "amount": {"currency_code": currency, "value": value}}]}
        doc = await self.client.create_order(ctx, body, "paymon-probe-" + secrets.token_hex(16), deadline)
        order_id, status, links = doc.get("id"), doc.get("status"), doc.get("links")
        if not isinstance(order_id, str) or not order_id.isalnum():
            raise ProbeFailure("bad_response", "create order: no order id in the answer")
        self.last_order = order_id
        if status not in ("CREATED", "PAYER_ACTION_REQUIRED"):
            raise ProbeFailure("bad_response", f"create order: {order_id} is {status!r}, expected CREATED")
        approve = [link.get("href") for link in links if isinstance(link, dict)
                   and link.get("rel") in ("approve", "payer-action")] if isinstance(links, list) else []
        if not approve or not isinstance(approve[0], str) or not approve[0].startswith(("http://", "https://")):
            raise ProbeFailure("bad_response", f"create order: {order_id} has no approve link")
        return Observation(status, f"created order {order_id} for {value} {currency}, {status}, approve link "
                                   "present; not cancellable (Orders v2), it expires unapproved")
