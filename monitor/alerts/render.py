"""Alert text for people, in Simplified Chinese or English. Pure: payload in, text out."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["alert_reason", "render_alert", "render_lost", "render_weight"]

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
    if reason is not None:
        return f"{head}: {reason}"
    if lang == "zh":
        return f"{head}: {label} = {value} (阈值 {threshold})"
    return f"{head}: {label} = {value} (threshold {threshold})"


_REASON_ZH: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^rule (\S+): drain$"), r"规则 \1: 摘除 (权重归零)"),
    (re.compile(r"^rule (\S+): reduce to (\S+)× baseline$"), r"规则 \1: 降至原权重的 \2 倍"),
    (re.compile(r"^restore step (\d+)/(\d+)$"), r"逐步恢复 第 \1/\2 步"),
    (re.compile(r"^edited in the shared config$"), "运营者手动修改了配置"),
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


_BEIJING = ZoneInfo("Asia/Shanghai")


def _when(text: Any, language: str) -> str:
    """A stored ISO time as operators read it: Beijing time in Chinese, UTC in English."""
    if not text:
        return "未知" if language == "zh" else "unknown"
    dt = datetime.fromisoformat(str(text))
    if language == "zh":
        return dt.astimezone(_BEIJING).strftime("%Y-%m-%d %H:%M:%S") + " 北京时间"
    return dt.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M:%S UTC")


def render_lost(p: Mapping[str, Any], *, language: str = "zh", names: Mapping[str, str] | None = None) -> str:
    """One line for a lost-order payload (``kind`` found or recovered): the order id first, it is what the
    operator looks up."""
    name = (names or {}).get(p["channel"], p["channel"])
    amount = p.get("amount") or "?"
    trade_no = p.get("trade_no") or ("无" if language == "zh" else "none")
    paid = _when(p.get("channel_paid_at"), language)
    minutes = f"{float(p.get('deadline_s') or 0) / 60:g}"
    if language == "zh":
        if p["kind"] == "recovered":
            return f"✅ 掉单已补 订单 {p['order_id']} · {name} ({p['channel']}) · 金额 {amount}: 商户已收到回调/已支付"
        how = "通道查单确认已支付" if p.get("evidence") == "reconcile" else "收到未通过验签的回调"
        return (f"🟠 掉单 订单 {p['order_id']} · {name} ({p['channel']}) · 金额 {amount} · 通道支付时间 {paid} · "
                f"通道流水号 {trade_no}: {how}，{minutes} 分钟内商户未收到有效回调")
    if p["kind"] == "recovered":
        return f"✅ LOST ORDER RECOVERED {p['order_id']} · {name} ({p['channel']}) · {amount}: the shop has it now"
    how = "the channel's order query says paid" if p.get("evidence") == "reconcile" else \
        "a callback arrived that failed verification"
    return (f"🟠 LOST ORDER {p['order_id']} · {name} ({p['channel']}) · {amount} · paid at the channel {paid} · "
            f"trade no {trade_no}: {how}, and no verified callback within {minutes} min")
