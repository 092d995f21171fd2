"""Writes the simulated shop's orders into dujiaoka's own ``orders`` table, the way dujiaoka does.

A mirror for :class:`monitor.sim.shop.Shop`: ``order_created`` inserts a row (status 1 待支付, ``pay_id`` from
the channel's ``pays`` row, empty ``trade_no``); a verified ``order_paid`` sets status 4 已完成 with the
gateway's ``trade_no`` and the delivered card in ``info``; ``order_expired`` sets status -1 if the order is still
unpaid. Timestamps are written as dujiaoka's Eloquent writes them: naive ``'Y-m-d H:i:s'`` strings of Beijing
wall-clock time, with no ``SET time_zone`` on the session, so a reader must apply the same
rule. This gives paymon's dujiaoka source a real database to read, with the simulator's ground truth beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, create_engine, text

from monitor.sim.shop import ShopOrder

__all__ = ["BEIJING", "STATUS", "DujiaokaWriter"]

BEIJING = ZoneInfo("Asia/Shanghai")
#: ``orders.status`` values.
STATUS = {"wait_pay": 1, "pending": 2, "processing": 3, "completed": 4, "failure": 5, "abnormal": 6, "expired": -1}


def beijing(ts: str | datetime) -> str:
    """An ISO time (or datetime) as dujiaoka stores it: Beijing wall clock, ``'Y-m-d H:i:s'``, no zone."""
    dt = datetime.fromisoformat(ts) if isinstance(ts, str) else ts
    return dt.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


class DujiaokaWriter:
    """Mirrors shop events into ``orders``. ``pay_ids`` maps channel id → ``pays.id``."""

    def __init__(self, url_or_engine: str | Engine, pay_ids: Mapping[str, int]) -> None:
        self.engine = create_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        self.pay_ids = dict(pay_ids)

    def ensure_pays(self, rows: Mapping[str, tuple[str, str]]) -> None:
        """Create missing ``pays`` rows: channel id → (pay_check, pay_handleroute), with ``self.pay_ids``."""
        with self.engine.begin() as conn:
            for channel, (pay_check, route) in rows.items():
                pay_id = self.pay_ids[channel]
                found = conn.execute(text("SELECT id FROM pays WHERE id = :id"), {"id": pay_id}).first()
                if found is None:
                    conn.execute(text(
                        "INSERT INTO pays (id, pay_name, pay_check, pay_method, pay_client, merchant_id, "
                        "merchant_key, merchant_pem, pay_handleroute, is_open) "
                        "VALUES (:id, :name, :check, 1, 3, '', '', '', :route, 1)"),
                        {"id": pay_id, "name": channel, "check": pay_check, "route": route})

    def __call__(self, event: str, order: ShopOrder, record: Mapping[str, Any]) -> None:
        when = beijing(str(record["ts"]))
        with self.engine.begin() as conn:
            if event == "order_created":
                price = f"{order.amount:.2f}"
                conn.execute(text(
                    "INSERT INTO orders (order_sn, goods_id, title, type, goods_price, buy_amount, total_price, "
                    "actual_price, email, pay_id, buy_ip, trade_no, status, created_at, updated_at) "
                    "VALUES (:sn, 1, :title, 1, :price, 1, :price, :price, :email, :pay_id, '127.0.0.1', '', 1, "
                    ":at, :at)"),
                    {"sn": order.order_id, "title": "测试商品 x 1", "price": price,
                     "email": "buyer@example.com", "pay_id": self.pay_ids.get(order.channel), "at": when})
            elif event == "order_paid":
                conn.execute(text(
                    "UPDATE orders SET status = 4, trade_no = :trade_no, info = :info, updated_at = :at "
                    "WHERE order_sn = :sn AND status <> 4"),
                    {"trade_no": record.get("trade_no") or "", "info": f"CARD-{order.order_id}", "at": when,
                     "sn": order.order_id})
            elif event == "order_expired":
                conn.execute(text(
                    "UPDATE orders SET status = -1, updated_at = :at WHERE order_sn = :sn AND status = 1"),
                    {"at": when, "sn": order.order_id})

    def close(self) -> None:
        self.engine.dispose()
