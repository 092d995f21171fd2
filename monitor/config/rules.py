"""Alert rules (``rules:`` in ``monitor.yaml``): a built-in signal, a comparison, what to do when it holds.

Signals are names from a fixed list; nothing the operator writes is evaluated as code.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import ConfigDict, Field, model_validator

from monitor.config.fields import ConfigModel, Duration, PositiveDuration, Slug, WindowText, invalid

if TYPE_CHECKING:
    from monitor.config.channels import ChannelConfig

__all__ = ["PROBE_SIGNALS", "SIGNALS", "UNWINDOWED_SIGNALS", "Action", "Rule"]

Signal = Literal[
    "probe_failures_in_a_row",
    "probe_success_ratio",
    "probe_latency_p95",
    "success_ratio",
    "orders",
    "lost_orders",
    "lost_order_ratio",
    "callback_latency_p50",
    "callback_latency_p95",
    "callback_latency_p99",
    "pending_orders",
    "unsettled_balance",
    "bad_signatures",
    "merchant_banned",
]
SIGNALS: tuple[str, ...] = get_args(Signal)
#: Signals computed from probe results; they take ``probe:`` (default ``query``).
PROBE_SIGNALS: frozenset[str] = frozenset(
    {"probe_failures_in_a_row", "probe_success_ratio", "probe_latency_p95"}
)
#: Signals that are a current value or a streak, not a figure over a window.
UNWINDOWED_SIGNALS: frozenset[str] = frozenset(
    {"probe_failures_in_a_row", "pending_orders", "unsettled_balance", "merchant_banned"}
)
DEFAULT_WINDOW = "15m"

ActionKind = Literal["notify", "drain", "reduce_weight"]
_ACTION_HINT = "expected notify, drain or {reduce_weight: 0.5}"


class Action(ConfigModel):
    """What a firing rule does. YAML writes ``notify``, ``drain`` or ``{reduce_weight: 0.5}``."""

    kind: ActionKind
    factor: Annotated[float, Field(allow_inf_nan=False)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, data: Any) -> Any:
        if isinstance(data, str):
            if data not in ("notify", "drain"):
                hint = " (it takes a factor: {reduce_weight: 0.5})" if data == "reduce_weight" else ""
                raise invalid(f"unknown action {data!r}{hint}; {_ACTION_HINT}")
            return {"kind": data}
        if isinstance(data, dict) and len(data) == 1 and "kind" not in data:
            ((kind, factor),) = data.items()
            if kind != "reduce_weight":
                raise invalid(f"unknown action {kind!r}; {_ACTION_HINT}")
            return {"kind": kind, "factor": factor}
        if isinstance(data, dict) and "kind" in data:
            return data
        raise invalid(_ACTION_HINT)

    @model_validator(mode="after")
    def _factor_fits_kind(self) -> Action:
        if self.kind == "reduce_weight":
            if self.factor is None or not 0 < self.factor < 1:
                raise invalid(f"reduce_weight takes a factor between 0 and 1 (exclusive), got {self.factor}")
        elif self.factor is not None:
            raise invalid(f"{self.kind} takes no factor")
        return self

    def __str__(self) -> str:
        return f"reduce_weight({self.factor:g})" if self.factor is not None else self.kind


Op = Literal["<", "<=", ">", ">=", "==", "!="]
Severity = Literal["critical", "warning", "info"]


class Rule(ConfigModel):
    """One alert rule. ``for_`` is the YAML key ``for``; ``channels`` / ``tier`` scope it (default: all)."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    name: Slug
    signal: Signal
    probe: Literal["query", "test_order", "balance"] | None = None
    window: WindowText | None = None
    op: Op = ">="
    threshold: Annotated[float, Field(allow_inf_nan=False)] | None = None
    recover: Annotated[float, Field(allow_inf_nan=False)] | None = None
    min_orders: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    for_: Duration = Field(default=timedelta(0), alias="for")
    repeat: PositiveDuration = timedelta(hours=1)
    max_reminders: Annotated[int, Field(ge=0, le=10_000)] | None = None
    severity: Severity = "warning"
    actions: tuple[Action, ...] = (Action(kind="notify"),)
    channels: tuple[str, ...] | None = None
    tier: Literal["primary", "backup", "special"] | None = None
    detector: Literal["cusum", "early"] | None = None
    false_alarms_per_week: Annotated[float, Field(gt=0, le=10_000, allow_inf_nan=False)] | None = None
    inhibits: tuple[str, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _signal_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        signal = data.get("signal")
        if signal in PROBE_SIGNALS and "probe" not in data:
            data = {**data, "probe": "query"}
        if signal in SIGNALS and signal not in UNWINDOWED_SIGNALS and "window" not in data:
            data = {**data, "window": DEFAULT_WINDOW}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if self.probe is not None and self.signal not in PROBE_SIGNALS:
            raise invalid(f"only probe_* signals take a probe, and {self.signal!r} is not one", at="probe")
        if self.window is not None and self.signal in UNWINDOWED_SIGNALS:
            raise invalid(f"{self.signal!r} is not measured over a window; remove 'window'", at="window")
        if self.threshold is None and self.detector is None:
            raise invalid("required (unless the rule uses a 'detector')", at="threshold")
        if self.detector == "early" and self.signal != "success_ratio":
            raise invalid("the early detector reads pending orders: it watches 'success_ratio' only", at="detector")
        if self.false_alarms_per_week is not None and self.detector is None:
            raise invalid("only used together with 'detector'", at="false_alarms_per_week")
        if self.channels is not None and self.tier is not None:
            raise invalid("give either 'channels' or 'tier', not both", at="tier")
        if self.channels is not None and not self.channels:
            raise invalid(
                "list at least one channel id, or remove 'channels' to watch every channel", at="channels"
            )
        self._check_recover()
        return self

    def _check_recover(self) -> None:
        if self.recover is None:
            return
        if self.threshold is None:
            raise invalid("needs a 'threshold' to recover from", at="recover")
        if self.op in ("==", "!="):
            raise invalid(f"only works with op <, <=, > or >=, not {self.op!r}", at="recover")
        fires_below = self.op in ("<", "<=")
        healthy = self.recover >= self.threshold if fires_below else self.recover <= self.threshold
        if not healthy:
            side, bound = ("below", ">=") if fires_below else ("above", "<=")
            raise invalid(
                f"must be on the healthy side of the threshold: with op {self.op!r} the alert fires {side} "
                f"{self.threshold:g}, so recover must be {bound} {self.threshold:g} (got {self.recover:g})",
                at="recover",
            )

    def applies_to(self, channel: ChannelConfig) -> bool:
        """True when this rule watches ``channel`` (by ``channels`` ids, by ``tier``, or all channels)."""
        if self.channels is not None:
            return channel.id in self.channels
        if self.tier is not None:
            return channel.tier == self.tier
        return True
