"""Text for several lost orders found at once (``monitor.store.lost_batch``): one message, by channel. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from monitor.alerts.render import duration

__all__ = ["render_lost_batch"]


def render_lost_batch(p: Mapping[str, Any], *, language: str = "zh", names: Mapping[str, str] | None = None) -> str:
    """``🟠 12 LOST ORDERS (...): main (epay-main) 10: A1 (10.00), A2 (?), … +N more; ...`` — the order ids
    first, they are what the operator looks up (``paymon status`` lists every one with its times)."""
    zh = language == "zh"
    within = duration(float(p.get("deadline_s") or 0), language)
    parts = []
    for group in p.get("channels") or ():
        ch = str(group["channel"])
        name = (names or {}).get(ch, ch)
        listed = [f"{o['order_id']} ({o.get('amount') or '?'})" for o in group.get("orders") or ()]
        more = int(group.get("count") or 0) - len(listed)
        if more > 0:
            listed.append(f"+{more} 笔" if zh else f"+{more} more")
        if zh:
            parts.append(f"{name} ({ch}) {group['count']} 笔: {'、'.join(listed)}")
        else:
            parts.append(f"{name} ({ch}) {group['count']}: {', '.join(listed)}")
    if zh:
        return (f"🟠 掉单 {p['count']} 笔 (通道已支付，{within}内商户未收到有效回调；详情见 paymon status): "
                + "; ".join(parts))
    return (f"🟠 {p['count']} LOST ORDERS (paid at the channel, no verified callback within {within}; details in "
            "paymon status): " + "; ".join(parts))
