"""The probe contract: what an adapter is, how it declares its probes, and how a probe run becomes a result.

An adapter (one file per channel ``kind``) subclasses :class:`ProbeAdapter` and marks one method per probe type
with :func:`handles`; ``supports`` and the dispatch of :meth:`ProbeAdapter.probe` follow from those marks. A
handler makes its gateway's calls through the kind's client (:mod:`monitor.clients`) and judges the answer.
Anything that goes wrong on the wire becomes a :class:`ProbeFailure` with one of the probe outcomes;
:func:`run_probe` turns that (and any bug in an adapter) into a :class:`~monitor.models.ProbeResult`, so a broken
or hostile gateway costs one result and never an exception in the scheduler. Every detail is redacted before it
leaves.

**Which order ``query`` asks about.** A gateway that signs its answer about an existing order but not its
"no such order" answer (epay V2) can only show a wrong platform key when the probe asks about
an order that exists. So ``query`` asks about :meth:`ProbeAdapter.order_to_query`: the last test order created on
this adapter (remembered even when the create's reply failed verification, since the gateway made the order
anyway), else one found by the adapter's :data:`OrderRecall` (paymon's newest test order on record or a recent real
order of the channel; the daemon gives it one built from the store, so the choice survives a restart), else a
sentinel id no shop uses.

The HTTP plumbing (:func:`fetch`, :class:`Reply`, :func:`parse_json`, :class:`ProbeContext`, ...) lives in
:mod:`monitor.clients.base` and is re-exported here for the adapters' callers.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from monitor.clients.base import (
    MAX_BODY,
    USER_AGENT,
    ProbeContext,
    ProbeFailure,
    Reply,
    base_url,
    decimal_field,
    fetch,
    parse_json,
    probe_timeout,
)
from monitor.config.channels import ChannelConfig
from monitor.models import ProbeResult

__all__ = [
    "MAX_BODY",
    "USER_AGENT",
    "Adapter",
    "AdapterFactory",
    "NO_ORDER_OUTCOMES",
    "RECALL_EVERY",
    "TEST_ORDER_ID",
    "Observation",
    "OrderRecall",
    "ProbeAdapter",
    "ProbeContext",
    "ProbeFailure",
    "Reply",
    "base_url",
    "create_and_close",
    "decimal_field",
    "fetch",
    "finish_test_order",
    "handles",
    "new_out_trade_no",
    "parse_json",
    "probe_timeout",
    "run_probe",
]

log = logging.getLogger(__name__)

#: How a create failed when the gateway surely made no order: never reached, or it refused the order.
NO_ORDER_OUTCOMES = frozenset({"connect_error", "maintenance", "business_error"})
#: What a test-order id looks like (:func:`new_out_trade_no`), so one can be found again in a stored detail.
TEST_ORDER_ID = re.compile(r"\bpaymon\d{14}[0-9a-f]{8}\b")
#: How long an order found by an :data:`OrderRecall` is reused before the recall is asked again.
RECALL_EVERY = timedelta(minutes=5)

#: Finds an order a channel's ``query`` can ask about when its adapter has created none since paymon started
#: (a restart, or no ``test_order`` probe): called with the channel id, it returns the id of paymon's newest test
#: order on record or of a recent real order of the channel, else None. The daemon builds one from the store.
OrderRecall = Callable[[str], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class Observation:
    """What a successful probe saw: the gateway's own code, a short detail, and a measured value if any."""

    code: str | None
    detail: str
    value: float | None = None


class Adapter(Protocol):
    """One gateway kind. ``supports`` lists the probe types it can run; ``probe`` runs one (raising ProbeFailure)."""

    kind: str
    supports: tuple[str, ...]

    async def probe(self, probe: str, ctx: ProbeContext) -> Observation:
        """Run ``probe``; return what it saw on success, raise ProbeFailure otherwise."""
        ...


#: What a registry holds per kind: builds the adapter of a channel (ValueError for unusable credentials).
AdapterFactory = Callable[[ChannelConfig], Adapter]

_Handler = TypeVar("_Handler", bound=Callable[..., Awaitable[Observation]])
ClientT = TypeVar("ClientT")
_PROBE_MARK = "__paymon_probe__"


def handles(probe: str) -> Callable[[_Handler], _Handler]:
    """Mark a :class:`ProbeAdapter` method ``async def m(self, ctx) -> Observation`` as the handler of ``probe``."""

    def mark(handler: _Handler) -> _Handler:
        setattr(handler, _PROBE_MARK, probe)
        return handler

    return mark


class ProbeAdapter(Generic[ClientT]):
    """Base of the gateway adapters: each probe type is declared once, by marking its handler with
    :func:`handles`; ``supports`` lists the marked probes in the order they are defined, and :meth:`probe`
    dispatches to them (an unsupported probe is ``bad_response``). Building an adapter builds its kind's
    gateway client (``client_class``) for the channel, which raises ``ValueError`` for unusable credentials."""

    kind: str = ""
    supports: tuple[str, ...] = ()
    client_class: Callable[[ChannelConfig], ClientT]
    #: Whether the gateway signs its answer about an existing order but not its "no such order" answer (epay
    #: V2), so ``query`` verifies a signature only when it has an order to ask about; ``check-config`` warns
    #: about such a channel that has none (no ``test_order`` probe, no order source).
    signs_only_found_orders: ClassVar[bool] = False
    #: The id of the last order ``test_order`` created on this adapter, which ``query`` then asks for (instead
    #: of a sentinel id no shop uses).
    last_order: str | None = None
    #: Where ``query`` finds an order when ``last_order`` is None (see :data:`OrderRecall`); None: nowhere.
    recall: OrderRecall | None = None
    _handlers: ClassVar[dict[str, str]] = {}  # probe type -> method name

    def __init__(self, channel: ChannelConfig) -> None:
        self.channel = channel
        self.client = self.client_class(channel)
        self._recalled: tuple[datetime, str | None] | None = None

    async def order_to_query(self, ctx: ProbeContext) -> str | None:
        """The order ``query`` asks about: the last test order created here, else the one ``recall`` finds (asked
        at most every :data:`RECALL_EVERY`), else None (the caller asks about its sentinel). A recall that fails
        is logged and counts as none: the probe still runs."""
        if self.last_order is not None:
            return self.last_order
        if self.recall is None:
            return None
        now = ctx.clock.now()
        if self._recalled is not None and now - self._recalled[0] < RECALL_EVERY:
            return self._recalled[1]
        try:
            found = await self.recall(self.channel.id)
        except Exception as exc:  # noqa: BLE001 - a broken lookup must not cost the probe
            log.warning("channel %s: no order to query (the lookup failed: %s)", self.channel.id,
                        ctx.redactor(f"{type(exc).__name__}: {exc}"))
            found = None
        self._recalled = (now, found)
        return found

    def order_source(self, wanted: str | None) -> str:
        """How a query detail names the order it asked about."""
        if wanted is None:
            return "sentinel order"
        return "last test order" if wanted == self.last_order else f"recent order {wanted}"

    def remember_order(self, out_trade_no: str) -> None:
        """Remember a test order the gateway made (or may have made) for ``query`` to ask about."""
        self.last_order = out_trade_no
        self._recalled = None

    def failed_create(self, out_trade_no: str, failure: ProbeFailure) -> ProbeFailure:
        """A test order's create failed: remember the order anyway unless the failure proves the gateway made
        none (:data:`NO_ORDER_OUTCOMES`) — a create whose reply failed verification, timed out or came back
        garbled may well have made it, and asking about it is what shows a signature problem again. Returns the
        failure to raise, its detail naming the order when it was remembered (so the stored result names it and
        the store's recall finds it after a restart)."""
        if failure.outcome in NO_ORDER_OUTCOMES:
            return failure
        self.remember_order(out_trade_no)
        if out_trade_no in failure.detail:
            return failure
        return ProbeFailure(failure.outcome, f"{failure.detail} (test order {out_trade_no} may exist)",
                            code=failure.code)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        marked = {getattr(fn, _PROBE_MARK): name for name, fn in vars(cls).items() if hasattr(fn, _PROBE_MARK)}
        cls._handlers = {**cls._handlers, **marked}
        cls.supports = tuple(cls._handlers)

    async def probe(self, probe: str, ctx: ProbeContext) -> Observation:
        """Run ``probe`` through its handler; return what it saw on success, raise ProbeFailure otherwise."""
        name = self._handlers.get(probe)
        if name is None:
            raise ProbeFailure("bad_response", f"probe {probe} is not supported for {self.kind}")
        handler: Callable[[ProbeContext], Awaitable[Observation]] = getattr(self, name)
        return await handler(ctx)


def new_out_trade_no(ctx: ProbeContext) -> str:
    """A fresh test-order id: ``paymon`` + the UTC time + 8 random hex digits (28 characters: within every
    gateway's limit, WeChat's 32 included, and only ``[A-Za-z0-9]`` so every gateway's pattern accepts it)."""
    return f"paymon{ctx.clock.now():%Y%m%d%H%M%S}{secrets.token_hex(4)}"


def finish_test_order(result: Observation | ProbeFailure, close: ProbeFailure | None, closed: bool) -> Observation:
    """The outcome of a test order once its close ran (or not): the check's outcome, with the close's result in
    the detail; a failed close after an ``ok`` check becomes the outcome."""
    if isinstance(result, Observation):
        if close is not None:
            raise ProbeFailure(close.outcome, f"{result.detail}; close failed: {close.detail}", code=close.code)
        return Observation(result.code, result.detail + ("; closed" if closed else ""), result.value)
    if close is not None:
        raise ProbeFailure(result.outcome, f"{result.detail}; close failed: {close.detail}", code=result.code)
    raise ProbeFailure(result.outcome, result.detail + ("; order closed" if closed else ""), code=result.code)


async def create_and_close(create: Callable[[], Awaitable[Observation]], close: Callable[[], Awaitable[bool]], *,
                           close_after: bool) -> Observation:
    """A test order: ``create`` it, then (``close_after``) ``close`` it in a ``finally``, so an order is not left
    open when the check failed midway — unless the create never reached the gateway (``connect_error``) or the
    gateway refused the order (``maintenance`` / ``business_error``, which a create raises for a refusal only):
    then no order exists. ``close`` returns whether it closed one (False: the gateway never created it). The
    outcome is :func:`finish_test_order`'s."""
    result: Observation | ProbeFailure
    close_failure: ProbeFailure | None = None
    closed = False
    may_exist = True
    try:
        result = await create()
    except ProbeFailure as failure:
        result = failure
        may_exist = failure.outcome not in NO_ORDER_OUTCOMES
    finally:
        if may_exist and close_after:
            try:
                closed = await close()
            except ProbeFailure as failure:
                close_failure = failure
    return finish_test_order(result, close_failure, closed)


async def run_probe(adapter: Adapter, channel: str, probe: str, ctx: ProbeContext) -> ProbeResult:
    """Run one probe and always return a result, never raise (bugs in an adapter are logged and reported)."""
    started = ctx.clock.now()
    t0 = time.perf_counter()
    value: float | None = None
    try:
        seen = await adapter.probe(probe, ctx)
        outcome, code, detail, value = "ok", seen.code, seen.detail, seen.value
    except ProbeFailure as f:
        outcome, code, detail = f.outcome, f.code, f.detail
    except Exception as exc:  # noqa: BLE001 - one broken adapter must not stop the scheduler
        log.error("probe %s/%s crashed: %s", channel, probe, ctx.redactor(repr(exc)))
        outcome, code, detail = "bad_response", None, f"probe error: {type(exc).__name__}"
    latency = time.perf_counter() - t0
    return ProbeResult(channel, probe, outcome, latency, started, ctx.redactor(detail)[:500],
                       None if code is None else ctx.redactor(str(code))[:64], value)
