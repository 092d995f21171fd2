"""Stripe probes (PaymentIntents API): ``query`` retrieves an intent, ``test_order`` creates and cancels one.

Every call goes through :class:`~monitor.clients.stripe.StripeClient` (the PaymentIntents API the simulator
serves; the secret key as a Bearer token).

- ``query``: ``GET v1/payment_intents/{id}`` for the last intent this adapter created, else for the sentinel
  ``pi_paymonprobe``. A PaymentIntent with that id, or Stripe's 404 ``resource_missing`` error (its JSON parsed
  although the HTTP status is 404), is ``ok``.
- ``test_order``: ``POST v1/payment_intents`` in the channel's ``currency`` (lowercased, as Stripe wants it) for
  ``probes.test_order.amount`` rounded *up* to what the currency can express and to Stripe's minimum charge
  (:func:`~monitor.protocols.stripe.charge_amount`: ``cny`` has no row in the minimum table, so its 50
  minor-unit floor, 0.50 CNY, applies; the default 0.01 is below it; 0.01 JPY is never sent as 0 yen), then
  checks the intent's ``client_secret`` and its status ``requires_payment_method``. With
  ``probes.test_order.close`` it is cancelled (``POST .../cancel``, reason ``abandoned``) on a deadline of its
  own, so an intent is not left open when the check failed midway; a failed cancel is named in the detail and,
  after an ``ok`` check, becomes the outcome.

No intent is left open (with ``close``). Each create carries a fresh ``Idempotency-Key`` and the metadata
``paymon_probe`` (that probe's id) and ``paymon_channel`` (the channel id). When the create gets no usable answer
but may have made an intent (a timeout, a broken connection, a 5xx, a 2xx that is not an intent: not a refused
connection, a 4xx refusal or Stripe's 503 ``api_error``), the probe sends the same create again with the same key
on a deadline of its own: Stripe answers with the intent the first one made (or makes it now; or replays a 5xx,
and then the intent is searched for by its ``paymon_probe``) and the probe cancels it. The outcome stays the
create's (a ``timeout`` did time out); the detail says the intent was found and cancelled, or that its cleanup is
pending. A pending cleanup is retried at the start of the next ``test_order``
run (on one deadline of the probe's timeout for all of them, before the new create). A restart forgets pending
cleanups, so the first ``test_order`` run of an adapter also searches Stripe
(``metadata['paymon_channel']:'<id>' AND status:'requires_payment_method' AND created<…``) for this channel's
probe intents older than :data:`SWEEP_AGE` (younger ones may belong to a probe still running elsewhere) and
cancels them. With ``close: false`` intents are left open on purpose and none of this runs.

Outcomes: the client's (no ``bad_signature``; HTTP 401 is ``business_error`` ``invalid_api_key``, 503
``api_error`` is ``maintenance``, other 4xx ``business_error``, other 5xx ``http_error``); a 2xx body that is
not the expected object is ``bad_response``.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from monitor.clients.base import Deadline
from monitor.clients.stripe import StripeClient, intent_of
from monitor.config.channels import ChannelConfig
from monitor.probes.base import Observation, ProbeAdapter, ProbeContext, ProbeFailure, handles, probe_timeout
from monitor.protocols.stripe import charge_amount, from_minor_units

__all__ = ["MAX_PENDING", "SENTINEL", "SWEEP_AGE", "StripeAdapter"]

log = logging.getLogger(__name__)

#: An intent id no account has: Stripe must answer ``resource_missing``.
SENTINEL = "pi_paymonprobe"
#: The restart sweep cancels only probe intents at least this old: a younger one may be another paymon's (a
#: ``paymon once`` next to the daemon) whose probe is still checking it.
SWEEP_AGE = timedelta(minutes=10)
#: At most this many creates wait for their cleanup; beyond it the oldest is given up (logged; the restart
#: sweep may still find it).
MAX_PENDING = 16
_DEFAULT_TIMEOUT = 10.0
#: Create failures after which no intent can exist: the request never left, or Stripe refused it.
_NOTHING_CREATED = frozenset({"connect_error", "business_error", "maintenance"})


@dataclass(frozen=True, slots=True)
class _Create:
    """One create request, kept until its intent is known to be cancelled: sent again as it was, with the same
    ``Idempotency-Key``, it finds the intent the first one made."""

    probe_id: str
    idempotency_key: str
    form: dict[str, str]


class StripeAdapter(ProbeAdapter[StripeClient]):
    """Probes for a channel of ``kind: stripe`` (credentials: ``secret_key``, ``sk_live_...``/``sk_test_...``)."""

    kind = "stripe"
    client_class = StripeClient
    #: The id of the last PaymentIntent this adapter created.
    last_intent: str | None = None

    def __init__(self, channel: ChannelConfig) -> None:
        super().__init__(channel)
        #: Creates whose intent may exist and is not known to be cancelled, by probe id, oldest first.
        self.pending: dict[str, _Create] = {}
        #: Whether this adapter has searched Stripe for probe intents an earlier process left open.
        self.swept = False

    @property
    def currency(self) -> str:
        """The channel's currency as Stripe writes it (lowercase ISO 4217)."""
        return (self.channel.currency or "CNY").lower()

    @handles("query")
    async def _query(self, ctx: ProbeContext) -> Observation:
        timeout = probe_timeout(self.channel.probes.query, _DEFAULT_TIMEOUT)
        pi_id = self.last_intent or SENTINEL
        status_code, status = await self.client.retrieve(ctx, pi_id, timeout)
        if status is None:
            return Observation("resource_missing", f"HTTP 404 resource_missing for {pi_id}, as expected")
        return Observation(status, f"HTTP {status_code}, intent {pi_id} is {status}")

    @handles("test_order")
    async def _test_order(self, ctx: ProbeContext) -> Observation:
        spec = self.channel.probes.test_order
        timeout = probe_timeout(spec, _DEFAULT_TIMEOUT)
        close = spec.close if spec is not None else True
        earlier = await self._clean_up(ctx, Deadline(timeout)) if close else []
        currency = self.currency
        amount = charge_amount(spec.amount if spec is not None else Decimal("0.01"), currency)
        request = self._new_create(amount, currency)
        if close:
            self._remember(request)
        created: str | None = None
        failure: ProbeFailure | None = None
        seen: Observation | None = None
        try:
            doc = await self.client.create(ctx, request.form, request.idempotency_key, timeout)
            created, status = intent_of(doc, "create")
            self.last_intent = created
            secret = doc.get("client_secret")
            if not isinstance(secret, str) or not secret.startswith(f"{created}_secret_"):
                raise ProbeFailure("bad_response", f"create: intent {created} has no client_secret")
            if status != "requires_payment_method":
                raise ProbeFailure("bad_response", f"create: intent {created} is {status}, expected "
                                                   "requires_payment_method")
            money = from_minor_units(amount, currency)
            seen = Observation(status, f"created intent {created} for {money} {currency}, {status}")
        except ProbeFailure as exc:
            failure = exc
        finally:
            closed = await self._cancel(ctx, request, created, timeout) if created is not None and close else None
        if failure is not None and created is None and close:
            if failure.outcome in _NOTHING_CREATED:
                self.pending.pop(request.probe_id, None)
            else:
                earlier.append(await self._find_and_cancel(ctx, request, Deadline(timeout)))
        notes = "".join(f"; {note}" for note in earlier)
        if failure is not None:
            if closed is not None:
                failure.detail += f"; {closed.detail}"
            failure.detail += notes
            raise failure
        if seen is None:  # pragma: no cover - the try either sets seen or a failure
            raise ProbeFailure("bad_response", "create: no result")
        if closed is not None:
            raise ProbeFailure(closed.outcome, f"{seen.detail}; {closed.detail}{notes}", code=closed.code)
        suffix = ", cancelled" if close else ", left open (close: false)"
        return Observation(seen.code, seen.detail + suffix + notes)

    def _new_create(self, amount: int, currency: str) -> _Create:
        probe_id = secrets.token_hex(12)
        form = {"amount": str(amount), "currency": currency, "description": "paymon probe (never paid)",
                "metadata[paymon_probe]": probe_id, "metadata[paymon_channel]": self.channel.id}
        return _Create(probe_id, "paymon-probe-" + probe_id, form)

    def _remember(self, request: _Create) -> None:
        """Keep ``request`` until its intent is known cancelled; the oldest beyond :data:`MAX_PENDING` is dropped."""
        self.pending[request.probe_id] = request
        while len(self.pending) > MAX_PENDING:
            dropped = next(iter(self.pending))
            del self.pending[dropped]
            log.warning("channel %s: gave up finding the Stripe intent of probe %s (metadata paymon_probe) to "
                        "cancel it; the next restart's sweep may still find it", self.channel.id, dropped)

    async def _cancel(self, ctx: ProbeContext, request: _Create, pi_id: str, timeout: float) -> ProbeFailure | None:
        """Cancel the intent (on a deadline of its own); the failure if that did not work (the create stays
        pending, to be cancelled by the next run), else None."""
        try:
            await self.client.cancel(ctx, pi_id, timeout)
        except ProbeFailure as exc:
            return exc.prefixed("cancel failed")
        self.pending.pop(request.probe_id, None)
        return None

    async def _find_and_cancel(self, ctx: ProbeContext, request: _Create, deadline: Deadline) -> str:
        """Find the intent ``request`` may have made and cancel it; what happened, in words. Still pending unless
        it is now known cancelled (or known to be past cancelling).

        ``request`` is sent again with its idempotency key: Stripe answers with the intent it made (or makes it
        now). A 5xx answer may be the first one replayed (Stripe keeps a 500 for its key too): then the intent is
        searched for by its ``paymon_probe`` metadata (Stripe's search index may lag by a minute: not found is
        pending, not gone)."""
        how = "its idempotency key"
        try:
            try:
                doc = await self.client.create(ctx, request.form, request.idempotency_key, deadline.left())
                pi_id, _ = intent_of(doc, "create again")
            except ProbeFailure as exc:
                if exc.outcome != "http_error":
                    raise
                query = f"metadata['paymon_probe']:'{request.probe_id}'"
                found = await self.client.search(ctx, query, deadline.left())
                if not found:
                    raise ProbeFailure("http_error", f"{exc.detail}; no intent found by search yet") from None
                pi_id, _ = intent_of(found[0], "search")
                how = "search"
            # The replay is the first answer as it was then; the intent may have moved on since.
            status = await self._cancel_if_open(ctx, pi_id, deadline)
        except ProbeFailure as exc:
            return (f"cleanup pending for probe {request.probe_id} (intent not found or not cancelled yet: "
                    f"{exc.detail})")
        self.pending.pop(request.probe_id, None)
        if status == "canceled":
            return f"probe intent {pi_id} found by {how} and cancelled"
        return f"probe intent {pi_id} found by {how} is {status}, not cancellable"

    async def _cancel_if_open(self, ctx: ProbeContext, pi_id: str, deadline: Deadline) -> str:
        """Cancel the intent unless it is past cancelling; its status now (``canceled`` once done)."""
        try:
            await self.client.cancel(ctx, pi_id, deadline.left())
        except ProbeFailure as exc:
            if exc.code != "payment_intent_unexpected_state":
                raise
            _, status = await self.client.retrieve(ctx, pi_id, deadline.left())
            if status is None:
                raise ProbeFailure("bad_response", f"intent {pi_id} vanished") from None
            return status
        return "canceled"

    async def _clean_up(self, ctx: ProbeContext, deadline: Deadline) -> list[str]:
        """Before a new create: cancel what earlier runs may have left open (the restart sweep once, then each
        pending create), all on ``deadline``; a note per intent found or cleanup still pending."""
        notes: list[str] = []
        if not self.swept:
            self.swept = True
            notes += await self._sweep(ctx, deadline)
        waiting = list(self.pending.values())
        for done, request in enumerate(waiting):
            try:
                deadline.left()
            except ProbeFailure:
                notes.append(f"cleanup pending for {len(waiting) - done} more earlier probe intent(s) (no time "
                             "left in this run)")
                break
            notes.append(await self._find_and_cancel(ctx, request, deadline))
        return notes

    async def _sweep(self, ctx: ProbeContext, deadline: Deadline) -> list[str]:
        """Search Stripe for this channel's open probe intents older than :data:`SWEEP_AGE` and cancel them."""
        before = int((ctx.clock.now() - SWEEP_AGE).timestamp())
        query = (f"metadata['paymon_channel']:'{self.channel.id}' AND status:'requires_payment_method' "
                 f"AND created<{before}")
        try:
            found: list[dict[str, Any]] = await self.client.search(ctx, query, deadline.left())
        except ProbeFailure as exc:
            return [f"search for probe intents left open before a restart failed: {exc.detail}"]
        notes: list[str] = []
        for doc in found:
            pi_id, _ = intent_of(doc, "search")
            try:
                status = await self._cancel_if_open(ctx, pi_id, deadline)
            except ProbeFailure as exc:
                notes.append(f"probe intent {pi_id} left open before a restart: cancel failed: {exc.detail}")
            else:
                notes.append(f"probe intent {pi_id} left open before a restart: now {status}")
        return notes
