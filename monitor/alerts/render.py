"""Alert text for people, in Simplified Chinese or English. Pure: payload in, text out."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from monitor.alerts.probe_reasons import probe_reason
from monitor.models import HELD_STATUS_WORDS
from monitor.timefmt import DEFAULT_ZONE, show_time

__all__ = ["alert_reason", "duration", "render_alert", "render_held", "render_lost", "render_sink_waiting",
           "render_weight"]

_KIND = {
    "zh": {"firing": "🔴 告警", "reminder": "⏰ 仍在告警", "resolved": "✅ 已恢复"},
    "en": {"firing": "🔴 FIRING", "reminder": "⏰ STILL FIRING", "resolved": "✅ RESOLVED"},
}
_SIGNAL_ZH = {
    "probe_failures_in_a_row": "探测连续失败次数",
    "probe_success_ratio": "探测成功率",
    "probe_latency_p95": "探测延迟 p95",
    "success_ratio": "支付成功率",
    "orders": "订单数",
    "lost_orders": "掉单数",
    "lost_order_ratio": "掉单率",
    "callback_latency_p50": "回调延迟 p50",
    "callback_latency_p95": "回调延迟 p95",
    "callback_latency_p99": "回调延迟 p99",
    "pending_orders": "待支付订单",
    "unsettled_balance": "未结算余额",
    "bad_signatures": "签名错误",
    "merchant_banned": "商户被封禁",
}
#: Signals whose alert is said in words rather than as "signal = value (threshold)": (firing, resolved) per
#: language. A banned merchant is a fact the gateway states, not a number crossing a threshold.
_REASONS: dict[str, dict[str, tuple[str, str]]] = {
    "merchant_banned": {
        "en": ("merchant banned at the gateway", "the gateway no longer reports the merchant banned"),
        "zh": ("商户已被通道封禁", "通道不再显示商户被封禁"),
    },
}


def alert_reason(signal: str, *, language: str = "zh", resolved: bool = False) -> str | None:
    """Why an alert on ``signal`` fires (or, ``resolved``, why it stopped), in words, for the signals that have
    such words (``merchant_banned``: "merchant banned at the gateway"); None for the others."""
    texts = _REASONS.get(signal)
    if texts is None:
        return None
    firing, gone = texts.get(language, texts["en"])
    return gone if resolved else firing


def _value(signal: str, v: Any) -> str:
    if v is None:
        return "n/a"
    if signal.endswith("ratio"):
        return f"{float(v) * 100:.1f}%"
    if "latency" in signal:
        return f"{float(v):.2f}s"
    return f"{float(v):g}"


def render_alert(p: Mapping[str, Any], *, language: str = "zh", names: Mapping[str, str] | None = None) -> str:
    """One line for an alert payload (see ``monitor.store.alerts.alert_payload``)."""
    lang = language if language in _KIND else "en"
    name = (names or {}).get(p["channel"], p["channel"])
    signal = p["signal"]
    label = _SIGNAL_ZH.get(signal, signal) if lang == "zh" else signal
    value = _value(signal, p.get("value"))
    threshold = _value(signal, p.get("threshold"))
    head = f"{_KIND[lang][p['kind']]} [{p['severity']}] {name} ({p['channel']}) · {p['rule']}"
    reason = alert_reason(signal, language=lang, resolved=p["kind"] == "resolved")
    why = f"; {probe_reason(p['probes'], language=lang)}" if p.get("probes") else ""
    if reason is not None:
        return f"{head}: {reason}{why}"
    if lang == "zh":
        return f"{head}: {label} = {value} (阈值 {threshold}){why}"
    return f"{head}: {label} = {value} (threshold {threshold}){why}"


_REASON_ZH: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^rule (\S+): drain$"), r"规则 \1: 摘除 (权重归零)"),
    (re.compile(r"^rule (\S+): reduce to (\S+)× baseline$"), r"规则 \1: 降至原权重的 \2 倍"),
    (re.compile(r"^restore step (\d+)/(\d+)$"), r"逐步恢复 第 \1/\2 步"),
    (re.compile(r"^explore: (\S+)× baseline$"), r"试探恢复: 原权重的 \1 倍 (少量真实订单)"),
    (re.compile(r"^edited in the shared config$"), "运营者手动修改了配置"),
    (re.compile(r"^(\d+) unpaid order\(s\) may still get their callback \(newest created (.+) Beijing time\).*$"),
     r"\1 笔未支付订单仍可能收到回调 (最新一笔创建于北京时间 \2)；独角数卡拒收已关闭网关的回调，待回调窗口过后再关闭"),
    (re.compile(r"^the configured UPDATE matched no row for this channel$"), "配置的 UPDATE 语句没有匹配到该通道的行"),
)


def _reason(text: str, language: str) -> str:
    if language != "zh":
        return text
    for pattern, repl in _REASON_ZH:
        if pattern.match(text):
            return pattern.sub(repl, text)
    return text


def render_weight(p: Mapping[str, Any], *, language: str = "zh", names: Mapping[str, str] | None = None) -> str:
    """One line for a weight-change payload."""
    name = (names or {}).get(p["channel"], p["channel"])
    if language == "zh":
        return f"⚖️ 权重 {name} ({p['channel']}): {p['old']} → {p['new']} ({_reason(p['reason'], 'zh')})"
    return f"⚖️ weight {name} ({p['channel']}): {p['old']} → {p['new']} ({p['reason']})"


def render_sink_waiting(p: Mapping[str, Any], *, language: str = "zh",
                        names: Mapping[str, str] | None = None) -> str:
    """One line for "a sink waits before applying a weight change" (sent once per change)."""
    name = (names or {}).get(p["channel"], p["channel"])
    if language == "zh":
        return (f"⏳ 权重 {name} ({p['channel']}) → {p['target']} 暂未写入 {p['sink']}: "
                f"{_reason(p['reason'], 'zh')}")
    return f"⏳ weight {name} ({p['channel']}) → {p['target']} waits at {p['sink']}: {p['reason']}"


def _when(text: Any, language: str, zone: str = DEFAULT_ZONE) -> str:
    """A stored ISO time as operators read it: in the display zone, with its offset (``2026-11-26 11:00:00
    +08:00``), in either language."""
    return show_time(str(text) if text else None, zone, unknown="未知" if language == "zh" else "unknown")


def duration(seconds: float, language: str = "en") -> str:
    """A duration as people say it, in whole units: ``20 s``, ``5 min``, ``1 h 30 min`` (zh ``20 秒``, ``5 分钟``,
    ``1 小时 30 分钟``). Fractions of a second are rounded to a tenth (``0.5 s``), never printed as minutes."""
    zh = language == "zh"
    units = (("天", "d"), ("小时", "h"), ("分钟", "min"), ("秒", "s"))
    if seconds < 60 and seconds != int(seconds):
        return f"{round(seconds, 1):g} {units[3][0] if zh else units[3][1]}"
    left = int(round(seconds))
    parts: list[str] = []
    for (name_zh, name_en), size in zip(units, (86400, 3600, 60, 1), strict=True):
        n, left = divmod(left, size)
        if n:
            parts.append(f"{n} {name_zh if zh else name_en}")
    return " ".join(parts) or ("0 秒" if zh else "0 s")


def _lost_time(p: Mapping[str, Any], language: str, zone: str) -> str:
    """A lost order's time: the channel's pay time when it gave one; else when paymon learned of the payment,
    labelled as such; never a made-up pay time."""
    zh = language == "zh"
    if p.get("channel_paid_at"):
        return f"通道支付时间 {_when(p['channel_paid_at'], language, zone)}" if zh else \
            f"paid at the channel {_when(p['channel_paid_at'], language, zone)}"
    if p.get("paid_learned_at"):
        return f"通道未给出支付时间 (paymon 获知时间 {_when(p['paid_learned_at'], language, zone)})" if zh else \
            f"no pay time from the channel (paymon learned of it at {_when(p['paid_learned_at'], language, zone)})"
    return "通道未给出支付时间" if zh else "no pay time from the channel"


def render_lost(p: Mapping[str, Any], *, language: str = "zh", names: Mapping[str, str] | None = None,
                timezone: str = DEFAULT_ZONE) -> str:
    """One line for a lost-order payload (``kind`` found or recovered): the order id first, it is what the
    operator looks up. Times are shown in ``timezone`` (``display.timezone``)."""
    name = (names or {}).get(p["channel"], p["channel"])
    amount = p.get("amount") or "?"
    trade_no = p.get("trade_no") or ("无" if language == "zh" else "none")
    when = _lost_time(p, language, timezone)
    within = duration(float(p.get("deadline_s") or 0), language)
    if language == "zh":
        if p["kind"] == "recovered":
            return f"✅ 掉单已补 订单 {p['order_id']} · {name} ({p['channel']}) · 金额 {amount}: 商户已收到回调/已支付"
        how = "通道查单确认已支付" if p.get("evidence") == "reconcile" else "收到未通过验签的回调"
        return (f"🟠 掉单 订单 {p['order_id']} · {name} ({p['channel']}) · 金额 {amount} · {when} · "
                f"通道流水号 {trade_no}: {how}，{within}内商户未收到有效回调")
    if p["kind"] == "recovered":
        return f"✅ LOST ORDER RECOVERED {p['order_id']} · {name} ({p['channel']}) · {amount}: the shop has it now"
    how = "the channel's order query says paid" if p.get("evidence") == "reconcile" else \
        "a callback arrived that failed verification"
    return (f"🟠 LOST ORDER {p['order_id']} · {name} ({p['channel']}) · {amount} · {when} · "
            f"trade no {trade_no}: {how}, and no verified callback within {within}")


#: Why held funds were released, in words.
_RELEASE = {
    "zh": {"paid": "通道现已确认支付 (按正常支付/掉单处理)", "refunded": "通道已退款给买家", "closed": "通道已关闭订单",
           "unpaid": "通道现显示未支付", "completed": "商户已完成该订单"},
    "en": {"paid": "the channel now says paid (the normal paid / lost-order path takes over)",
           "refunded": "the channel refunded the buyer", "closed": "the channel closed the order",
           "unpaid": "the channel now says unpaid", "completed": "the shop has completed the order"},
}


def render_held(p: Mapping[str, Any], *, language: str = "zh", names: Mapping[str, str] | None = None,
                timezone: str = DEFAULT_ZONE) -> str:
    """One line for a held-funds payload (``kind`` held or released): the channel holds the buyer's money without
    completing the payment, the shop has no order, an operator must look. The only time shown is when paymon saw
    it (the channel gives no pay time)."""
    lang = "zh" if language == "zh" else "en"
    name = (names or {}).get(p["channel"], p["channel"])
    amount = p.get("amount") or "?"
    trade_no = p.get("trade_no") or ("无" if lang == "zh" else "none")
    status = str(p.get("status") or "?")
    word = HELD_STATUS_WORDS.get(status, (status, status))
    seen = _when(p.get("seen_at"), lang, timezone)
    if p["kind"] == "released":
        why = _RELEASE[lang].get(str(p.get("release")), str(p.get("release") or "?"))
        if lang == "zh":
            return f"✅ 资金冻结已解除 订单 {p['order_id']} · {name} ({p['channel']}) · 金额 {amount}: {why}"
        return f"✅ HELD FUNDS RELEASED {p['order_id']} · {name} ({p['channel']}) · {amount}: {why}"
    if lang == "zh":
        return (f"🟡 资金被通道冻结 订单 {p['order_id']} · {name} ({p['channel']}) · 金额 {amount} · "
                f"通道状态 {status} {word[0]} · 通道流水号 {trade_no} · paymon 获知时间 {seen}: 买家的钱被通道冻结，"
                "支付未完成，商户没有这笔订单，请人工核查 (不会补发回调)")
    return (f"🟡 HELD FUNDS {p['order_id']} · {name} ({p['channel']}) · {amount} · channel status {status} "
            f"{word[1]} ({word[0]}) · trade no {trade_no} · paymon saw it at {seen}: the channel holds the buyer's "
            "money without completing the payment; the shop has no order; an operator must look (no notify is "
            "replayed)")
