"""epusdt (USDT-TRC20, ``assimon/epusdt``) probes: ``test_order`` creates an order, ``query`` only reads.

epusdt has no merchant order-query API: the only read is the public ``GET
pay/check-status/{trade_id}``, which needs a ``trade_id`` only a create returns and checks no credential.

- ``test_order``: ``POST api/v1/order/create-transaction`` (JSON, signed with the API token as epusdt requires, a fresh
  ``order_id`` ``paymon-probe-<random>`` each time since a used ``order_id`` is never re-creatable) for the
  smallest amount epusdt accepts, checks that a ``trade_id``, a wallet address, a USDT amount and a
  ``payment_url`` come back, then asks ``pay/check-status/{trade_id}`` and expects status 1 (等待支付, waiting).
  The ``trade_id`` is remembered for ``query``. This is the only probe that creates an order, so it runs only on
  the ``test_order`` schedule.
- ``query``: ``pay/check-status`` of the last ``trade_id`` ``test_order`` created here; any of epusdt's statuses
  (1 waiting, 2 paid, 3 expired) is ``ok``. Before a test order exists (or after a restart) it asks about
  :data:`SENTINEL_TRADE_ID`, which must be answered 10008 订单不存在. It never creates an order: the probe used to
  create one per run (about 20 waiting orders per 10 minutes at ``every: 30s``). ``check-status`` checks no
  credential, so a wrong token shows only in ``test_order``.

Amount: epusdt's validator requires ``amount > 0.01`` CNY, so the probe asks for 0.02 CNY unless
``probes.test_order.amount`` is larger. Nothing is ever paid and nothing can be closed: epusdt has no close API,
the order simply expires (``order_expiration_time``, 10 min by default). The ``notify_url`` is on the reserved
``.invalid`` domain, so a probe order could never notify a shop.

Outcomes: the client's (:mod:`monitor.clients.epusdt`: no ``bad_signature``, 系统错误 is ``maintenance``, other
codes ``business_error``). A reply without the expected fields, or a fresh order whose status is not 1, is
``bad_response``.
"""

from __future__ import annotations

import secrets
from decimal import Decimal

from monitor.clients.base import Deadline
from monitor.clients.epusdt import EpusdtClient
from monitor.config.channels import TestOrderProbe
from monitor.probes.base import Observation, ProbeAdapter, ProbeContext, ProbeFailure, handles, probe_timeout
from monitor.protocols.epusdt import (
    CODE_OK,
    CODE_ORDER_NOT_FOUND,
    ERRNO,
    STATUS_EXPIRED,
    STATUS_PAID,
    STATUS_WAIT_PAY,
)

__all__ = ["MIN_AMOUNT", "NOTIFY_URL", "SENTINEL_TRADE_ID", "EpusdtAdapter"]

#: The smallest amount (CNY) epusdt accepts: its validator wants ``amount > 0.01``.
MIN_AMOUNT = Decimal("0.02")
#: Where a probe order would notify: a reserved domain that never resolves (RFC 2606).
NOTIFY_URL = "https://paymon-probe.invalid/epusdt/notify"
#: A ``trade_id`` no order has (epusdt's are digits): what ``query`` asks about before a test order exists.
SENTINEL_TRADE_ID = "paymonprobesentinel"
_DEFAULT_TIMEOUT = 10.0
_STATUS_NAMES = {STATUS_WAIT_PAY: "1 (waiting)", STATUS_PAID: "2 (paid)", STATUS_EXPIRED: "3 (expired)"}


class EpusdtAdapter(ProbeAdapter[EpusdtClient]):
    """Probes for a channel of ``kind: epusdt`` (credentials: ``token``, epusdt's ``api_auth_token``)."""

    kind = "epusdt"
    client_class = EpusdtClient
    #: The trade_id of the last order this adapter created.
    last_trade_id: str | None = None

    def _amount(self) -> Decimal:
        spec = self.channel.probes.test_order
        return max(MIN_AMOUNT, spec.amount) if spec is not None else MIN_AMOUNT

    @handles("query")
    async def _query(self, ctx: ProbeContext) -> Observation:
        """Read the last test order's status (or the sentinel's "not found"); never create an order."""
        deadline = Deadline(probe_timeout(self.channel.probes.query, _DEFAULT_TIMEOUT))
        trade_id = self.last_trade_id
        wanted = trade_id or SENTINEL_TRADE_ID
        try:
            data = await self.client.check_status(ctx, wanted, deadline)
        except ProbeFailure as failure:
            if failure.code != str(CODE_ORDER_NOT_FOUND):
                raise
            if trade_id is None:
                return Observation(failure.code, f"check-status: no test order yet; the sentinel trade is unknown "
                                                 f"({CODE_ORDER_NOT_FOUND} {ERRNO[CODE_ORDER_NOT_FOUND]}), as "
                                                 "expected; nothing created")
            return Observation(failure.code, f"check-status: the last test trade {trade_id} is unknown to the "
                                             f"gateway ({CODE_ORDER_NOT_FOUND}); nothing created")
        if str(data.get("trade_id", wanted)) != wanted:
            raise ProbeFailure("bad_response", f"check-status: answered for another trade than {wanted}")
        if trade_id is None:
            raise ProbeFailure("bad_response", "check-status: the sentinel trade id was answered as if it existed")
        status = data.get("status")
        number = None if isinstance(status, bool) else _int(status)
        name = None if number is None else _STATUS_NAMES.get(number)
        if name is None:
            raise ProbeFailure("bad_response", f"check-status: trade {trade_id} has status {status!r}")
        return Observation(str(CODE_OK), f"check-status: last test trade {trade_id} has status {name}; "
                                         "nothing created")

    @handles("test_order")
    async def _test_order(self, ctx: ProbeContext) -> Observation:
        return await self._create_and_check(ctx, self.channel.probes.test_order)

    async def _create_and_check(self, ctx: ProbeContext, spec: TestOrderProbe | None) -> Observation:
        """Create the smallest order, check what came back, and that its status is "waiting"."""
        deadline = Deadline(probe_timeout(spec, _DEFAULT_TIMEOUT))
        amount = self._amount()
        order_id = "paymon-probe-" + secrets.token_hex(9)  # 31 characters; epusdt allows 32
        data = await self.client.create_transaction(ctx, order_id, amount, NOTIFY_URL, deadline)
        trade_id = data.get("trade_id")
        if not isinstance(trade_id, str) or not trade_id.isalnum():
            raise ProbeFailure("bad_response", "create-transaction: no 'trade_id' in the answer")
        self.last_trade_id = trade_id
        missing = [name for name in ("token", "payment_url") if not isinstance(data.get(name), str) or not data[name]]
        usdt = data.get("actual_amount")
        if isinstance(usdt, bool) or not isinstance(usdt, int | float) or usdt <= 0:
            missing.append("actual_amount")
        if missing:
            raise ProbeFailure("bad_response", f"create-transaction: trade {trade_id} lacks {', '.join(missing)}")
        if data.get("order_id") not in (None, order_id):
            raise ProbeFailure("bad_response", f"create-transaction: trade {trade_id} is not for our order_id")
        if not str(data["payment_url"]).startswith(("http://", "https://")):
            raise ProbeFailure("bad_response", f"create-transaction: trade {trade_id} has no usable payment_url")

        status_data = await self.client.check_status(ctx, trade_id, deadline)
        status = status_data.get("status")
        if str(status_data.get("trade_id", trade_id)) != trade_id:
            raise ProbeFailure("bad_response", f"check-status: answered for another trade than {trade_id}")
        if isinstance(status, bool) or str(status) != str(STATUS_WAIT_PAY):
            raise ProbeFailure("bad_response", f"check-status: new trade {trade_id} has status {status!r}, "
                                               f"expected {STATUS_WAIT_PAY} (waiting)")
        return Observation(str(CODE_OK), f"created trade {trade_id}: {amount} CNY = {usdt} USDT, status 1 "
                                         "(waiting), left to expire (epusdt cannot close)")


def _int(value: object) -> int | None:
    """A status as an int (epusdt sends a number; a numeric string is accepted), None when it is not one."""
    text = str(value).strip()
    return int(text) if text.isdigit() else None
