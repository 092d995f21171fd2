"""The simulated shop mirrored into dujiaoka's real `orders` schema on MariaDB, the way dujiaoka writes it."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import datetime
from pathlib import Path

from sqlalchemy import create_engine, text

from monitor.sim.dujiaoka import BEIJING, DujiaokaWriter
from monitor.sim.faults import Faults
from monitor.sim.server import SimServer
from monitor.sim.shop import Shop, ShopTraffic
from tests.conftest import PATIENCE_S, wait_until

DDL = Path(__file__).resolve().parents[1] / "data" / "dujiaoka.sql"
KEY = "dujiaoka-writer-key-123"


def schema() -> list[str]:
    body = "\n".join(line for line in DDL.read_text(encoding="utf-8").splitlines() if not line.startswith("--"))
    return [stmt.strip() for stmt in body.split(";") if stmt.strip()]


async def test_orders_rows_follow_the_shop(mariadb_url: str, tmp_path: Path) -> None:
    engine = create_engine(mariadb_url)
    with engine.begin() as conn:
        for stmt in schema():
            conn.execute(text(stmt))
    writer = DujiaokaWriter(engine, {"epay-main": 15})
    writer.ensure_pays({"epay-main": ("wxpay", "/pay/yipay")})
    log = tmp_path / "orders.jsonl"
    async with SimServer(rng=random.Random(3)) as sim:
        sim.add_channel("epay-main", pid=1001, key=KEY,
                        faults=Faults(pay_probability=0.6, callback_delay_s=0.0, callback_drop_rate=0.3))
        async with Shop(log, rng=random.Random(4), expire_after=0.4, mirrors=[writer]) as shop:
            async with ShopTraffic(shop, sim, ["epay-main"], rate_per_s=40.0, rng=random.Random(5),
                                   expire_check_s=0.05) as traffic:
                # ~1 s of orders when the machine is idle; counted in orders when it is busy
                assert await wait_until(lambda: traffic.created >= 40)
            assert await sim.wait_notifies(PATIENCE_S)
            await asyncio.sleep(0.45)
            shop.expire_due()
        truth = {t.out_trade_no: t for t in sim.ground_truth()}

    events = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    created = {e["order_id"]: e for e in events if e["event"] == "order_created"}
    paid = {e["order_id"]: e["trade_no"] for e in events if e["event"] == "order_paid"}
    with engine.connect() as conn:
        rows = {r.order_sn: r for r in conn.execute(text(
            "SELECT order_sn, pay_id, status, trade_no, actual_price, CAST(created_at AS CHAR) AS created "
            "FROM orders"))}
        pays = conn.execute(text("SELECT pay_check, pay_handleroute, is_open FROM pays WHERE id = 15")).one()
    engine.dispose()

    assert len(rows) == len(created) >= 20
    assert tuple(pays) == ("wxpay", "/pay/yipay", 1)
    for sn, row in rows.items():
        assert row.pay_id == 15
        assert f"{row.actual_price:.2f}" == created[sn]["amount"]
        # Beijing wall clock, as dujiaoka's Eloquent writes it (the session time zone is left alone).
        expected = datetime.fromisoformat(created[sn]["ts"]).astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
        assert row.created == expected
        if sn in paid:
            assert (row.status, row.trade_no) == (4, paid[sn])
            assert truth[sn].callback_acknowledged
        else:
            assert (row.status, row.trade_no) == (-1, "")
    lost = [sn for sn, t in truth.items() if t.paid and t.callback_dropped]
    assert lost and all(rows[sn].status == -1 for sn in lost)  # 掉单: paid at the gateway, expired in the shop


#: dujiaoka's own CREATE TABLE statements, verbatim (its header names the commit they come from).
REFERENCE = Path(__file__).resolve().parents[1] / "data" / "dujiaoka_schema.sql"


def test_fixture_matches_the_reference_ddl(mariadb_url: str) -> None:
    """Our fixture must create exactly the columns and indexes of dujiaoka's own DDL."""
    reference = "\n".join(line for line in REFERENCE.read_text(encoding="utf-8").splitlines()
                          if not line.startswith("--"))
    engine = create_engine(mariadb_url)
    shapes = []
    for statements in (schema(), [s.strip() for s in reference.split(";") if s.strip()]):
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS orders, pays"))
            for stmt in statements:
                conn.execute(text(stmt))
            columns = conn.execute(text(
                "SELECT table_name, column_name, column_type, is_nullable, column_default, character_set_name, "
                "collation_name FROM information_schema.columns WHERE table_schema = DATABASE() "
                "ORDER BY table_name, ordinal_position")).all()
            indexes = conn.execute(text(
                "SELECT table_name, index_name, non_unique, column_name FROM information_schema.statistics "
                "WHERE table_schema = DATABASE() ORDER BY table_name, index_name, seq_in_index")).all()
        shapes.append((columns, indexes))
    engine.dispose()
    assert len(shapes[0][0]) == 36
    assert shapes[0] == shapes[1]
