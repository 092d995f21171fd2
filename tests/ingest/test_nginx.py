"""The nginx source: callback hits in an access log become callback events, everything else is counted."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from monitor.clock import FixedClock
from monitor.ingest import NginxSource
from monitor.store import Store

CALLBACKS = {"/pay/yipay/notify_url": "c1", "/pay/vpay/notify_url/": "c2"}


def line(clock: FixedClock, path: str, status: int, minutes: float = -5) -> str:
    at = (clock.now() + timedelta(minutes=minutes)).astimezone()
    stamp = at.strftime("%d/%b/%Y:%H:%M:%S %z")
    return (f'203.0.113.9 - - [{stamp}] "GET {path} HTTP/1.1" {status} 7 "-" '
            f'"Mozilla/5.0 (Windows NT 10.0; WOW64) Chrome/78.0.3904.108"\n')


@pytest.fixture
def source(tmp_path: Path, sqlite_store: Store, clock: FixedClock) -> NginxSource:
    return NginxSource(source_id="nginx:test", path=tmp_path / "access.log", timezone="UTC", store=sqlite_store,
                       clock=clock, callbacks=CALLBACKS, channels=["c1", "c2"])


def test_callback_hits_become_events(source: NginxSource, sqlite_store: Store, clock: FixedClock) -> None:
    source.path.write_text(
        line(clock, "/pay/yipay/notify_url?pid=1001&trade_no=2026112600000012345&out_trade_no=A1&money=10&sign=x", 200)
        + line(clock, "/pay/yipay/notify_url?out_trade_no=A2&trade_no=T2", 500)
        + line(clock, "/pay/vpay/notify_url?payId=1&param=A3", 200)          # no order id in the query
        + line(clock, "/pay/vpay/notify_url/?order_id=A4", 200)
        + line(clock, "/pay/yipay/notify_url", 405)                          # a POST notify: no order id
        + line(clock, "/", 200)
        + "garbage\n"
        + line(clock, "/pay/yipay/notify_url?out_trade_no=A5", 200, minutes=60), encoding="utf-8")
    with source:
        r = source.poll()
    assert (r.accepted, r.rejected) == (3, 5)
    assert r.reasons == {"no_order_id": 2, "not_a_callback": 1, "bad_line": 1, "future_timestamp": 1}
    df = sqlite_store.orders_frame(clock.now() - timedelta(hours=1)).set_index("order_id")
    assert df.loc["A1", "callback_at"] == clock.now() - timedelta(minutes=5) and df.loc["A1", "trade_no"] is not None
    assert df.loc["A2"].isna()["callback_at"] and df.loc["A2", "unverified_callback_at"] is not None
    assert df.loc["A4", "channel"] == "c2"


def test_custom_pattern(tmp_path: Path, sqlite_store: Store, clock: FixedClock) -> None:
    log = tmp_path / "custom.log"
    stamp = clock.now().strftime("%d/%b/%Y:%H:%M:%S +0000")
    log.write_text(f'{stamp} 200 "GET /pay/yipay/notify_url?out_trade_no=C1 HTTP/1.1"\n', encoding="utf-8")
    src = NginxSource(source_id="nginx:custom", path=log, timezone="UTC", store=sqlite_store, clock=clock,
                      callbacks=CALLBACKS, pattern=r'(?P<time>\S+ \S+) (?P<status>\d+) "(?P<request>[^"]*)"')
    with src:
        assert src.poll().accepted == 1


def test_built_from_the_config(tmp_path: Path) -> None:
    from monitor.cli import build_app
    from monitor.config import load_config
    from tests.test_pipeline import CHANNELS

    (tmp_path / "channels.yaml").write_text(CHANNELS, encoding="utf-8")
    (tmp_path / "monitor.yaml").write_text(
        'storage: {url: "sqlite:///paymon.db"}\n'
        'sources: [{kind: nginx, path: access.log, callbacks: {"/pay/yipay/notify_url": main}}]\n',
        encoding="utf-8")
    app = build_app(load_config(tmp_path / "monitor.yaml", env={}))
    try:
        [src] = app.pipeline.sources
        assert isinstance(src, NginxSource) and src.callbacks == {"/pay/yipay/notify_url": "main"}
    finally:
        app.pipeline.close()
        app.store.close()


def test_copytruncate_refilled_past_the_old_offset_is_read_from_the_start(
    source: NginxSource, sqlite_store: Store, clock: FixedClock,
) -> None:
    hit = "/pay/yipay/notify_url?out_trade_no={}&trade_no=T"
    source.path.write_text(line(clock, hit.format("N1"), 200) + line(clock, hit.format("N2"), 200), encoding="utf-8")
    with source:
        assert source.poll().accepted == 2
        old_size = source.path.stat().st_size
        # logrotate's copytruncate, and nginx logged more than before by the next read: same inode, bigger file
        source.path.write_text("".join(line(clock, hit.format(f"M{i}"), 200) for i in range(4)), encoding="utf-8")
        assert source.path.stat().st_size > old_size
        r = source.poll()
    assert (r.accepted, r.duplicate, source.replaced) == (4, 0, 1)
    df = sqlite_store.orders_frame(clock.now() - timedelta(hours=1))
    assert sorted(df["order_id"]) == ["M0", "M1", "M2", "M3", "N1", "N2"]
