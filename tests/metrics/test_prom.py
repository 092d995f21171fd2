"""``/metrics`` is computed at scrape time from the last cycle's view: series follow the config, a scrape never
touches the database, and unknown values have no series rather than a 0."""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event

from monitor import __version__
from monitor.clock import FixedClock
from monitor.http import HttpServer
from monitor.metrics.counting import OUTCOMES as ORDER_OUTCOMES
from monitor.metrics.prom import INGEST_RESULTS, NOTIFY_RESULTS, RECONCILE_RESULTS, REPLAY_RESULTS, CycleView, Metrics
from monitor.models import OUTCOMES, PROBE_TYPES, ProbeResult
from tests.test_pipeline import CHANNELS, Rig


def scrape(metrics: Metrics) -> dict[str, list[dict[str, str]]]:
    """GET /metrics over HTTP; each family's samples' labels (with the value under ``_value``)."""
    server = HttpServer("127.0.0.1", 0, registry=metrics.registry, health=lambda: (True, "ok"),
                        status=dict).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=30) as r:
            body = r.read().decode()
    finally:
        server.stop()
    return {f.name: [{**s.labels, "_value": str(s.value)} for s in f.samples]
            for f in text_string_to_metric_families(body)}


def channels_in(fams: dict[str, list[dict[str, str]]]) -> dict[str, set[str]]:
    return {name: {s["channel"] for s in samples if "channel" in s} for name, samples in fams.items()}


def test_a_channel_removed_from_the_config_leaves_metrics_after_the_next_cycle(rig: Rig) -> None:
    metrics = rig.app.metrics
    for ch in ("main", "backup"):
        rig.probes(ch, "ok")
        metrics.observe_probe(ProbeResult(ch, "query", "ok", 0.1, rig.clock.now()))
        metrics.count_reconcile(ch, "unpaid")
    for i in range(6):
        rig.events({"event": "order_created", "order_id": f"B{i}", "channel": "backup", "amount": "1.00"},
                   {"event": "callback_received", "order_id": f"B{i}", "channel": "backup", "verified": True})
    rig.app.pipeline.cycle()
    before = channels_in(scrape(metrics))
    assert before["paymon_success_ratio"] == {"backup"}  # main has no orders: no ratio, not a 0
    for name in ("paymon_probe_success", "paymon_probe", "paymon_probe_duration_seconds", "paymon_routing_weight",
                 "paymon_channel_state", "paymon_funnel_orders", "paymon_reconcile"):
        assert before[name] == {"main", "backup"}, name

    # The operator removes backup; paymon is started again on the new config with the same metrics.
    (rig.folder / "channels.yaml").write_text(CHANNELS.split("  - id: backup")[0], encoding="utf-8")
    rig.app.pipeline.close()
    rig.app.store.close()
    rig.app = rig.start_with(metrics)
    rig.clock.advance(60)
    rig.app.pipeline.cycle()
    after = channels_in(scrape(metrics))
    assert all("backup" not in chans for chans in after.values()), {n: c for n, c in after.items() if "backup" in c}
    assert after["paymon_routing_weight"] == {"main"} and after["paymon_probe_success"] == {"main"}
    assert after["paymon_channel_state"] == {"main"} and after["paymon_reconcile"] == {"main"}


def test_a_scrape_never_touches_the_database(rig: Rig) -> None:
    rig.probes("main", "ok")
    rig.app.pipeline.cycle()
    statements: list[str] = []
    record = lambda conn, cursor, statement, *rest: statements.append(statement)  # noqa: E731
    event.listen(rig.app.store.engine, "before_cursor_execute", record)
    try:
        fams = scrape(rig.app.metrics)
    finally:
        event.remove(rig.app.store.engine, "before_cursor_execute", record)
    assert statements == []
    states = {s["state"]: s["_value"] for s in fams["paymon_channel_state"] if s["channel"] == "main"}
    assert states["healthy"] == "1.0" and states["down"] == "0.0"
    assert fams["paymon_leader"][0]["_value"] == "1.0"


def test_ingest_lag_grows_between_cycles_with_a_clock() -> None:
    clock = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    metrics = Metrics(clock=clock)
    metrics.publish(CycleView(at=clock.now(), channels=frozenset(), last_data={"orders": clock.now()}))
    clock.advance(timedelta(seconds=42))
    assert metrics.registry.get_sample_value("paymon_ingest_lag_seconds", {"source": "orders"}) == 42
    assert metrics.registry.get_sample_value("paymon_leader", {}) == 1


def test_event_series_of_unknown_channels_and_sinks_are_dropped_on_publish() -> None:
    metrics = Metrics()
    at = datetime(2026, 1, 1, tzinfo=UTC)
    metrics.observe_probe(ProbeResult("gone", "balance", "ok", 0.2, at, value=12.5))
    metrics.count_notification("console", "sent")
    metrics.count_notification("old-sink", "sent")
    metrics.count_orders({("gone", "paid"): 2}, [("gone", -1.0)])
    value = metrics.registry.get_sample_value
    assert value("paymon_unsettled_balance", {"channel": "gone"}) == 12.5
    assert value("paymon_callback_latency_seconds_bucket", {"channel": "gone", "le": "1.0"}) == 1  # -1 s → 0 s
    metrics.publish(CycleView(at=at, channels=frozenset({"kept"}), queue={"console": 0}))
    assert value("paymon_unsettled_balance", {"channel": "gone"}) is None
    assert value("paymon_orders_total", {"channel": "gone", "outcome": "paid"}) is None
    assert value("paymon_notifications_total", {"sink": "console", "result": "sent"}) == 1
    assert value("paymon_notifications_total", {"sink": "old-sink", "result": "sent"}) is None
    assert value("paymon_notification_queue", {"sink": "console"}) == 0


def test_process_metrics_and_build_info_are_exported(rig: Rig) -> None:
    fams = scrape(rig.app.metrics)
    assert fams["paymon_build_info"] == [{"version": __version__, "_value": "1.0"}]
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds"} <= set(fams)
    assert float(fams["process_resident_memory_bytes"][0]["_value"]) > 0


def test_counters_start_at_zero_per_channel_source_and_sink_before_any_event(rig: Rig) -> None:
    path = rig.folder / "channels.yaml"
    key = 'key: "main-key-123456"}'
    path.write_text(path.read_text(encoding="utf-8").replace(key, key + "\n    probes: {query: {every: 30s}}"),
                    encoding="utf-8")
    rig.restart()
    # Families are named without "_total" by the parser.
    fams = scrape(rig.app.metrics)  # straight after start: no cycle, no probe, no order yet
    for name, results in (("paymon_orders", ORDER_OUTCOMES), ("paymon_reconcile", RECONCILE_RESULTS),
                          ("paymon_notify_replays", REPLAY_RESULTS)):
        got = {(s["channel"], s.get("outcome") or s["result"]): s["_value"] for s in fams[name]}
        assert got == {(ch, r): "0.0" for ch in ("main", "backup") for r in results}, name
    assert {(s["sink"], s["result"], s["_value"]) for s in fams["paymon_notifications"]} == {
        ("console", r, "0.0") for r in NOTIFY_RESULTS}
    assert {(s["source"], s["result"], s["_value"]) for s in fams["paymon_ingest_events"]} == {
        ("jsonl:orders.jsonl", r, "0.0") for r in INGEST_RESULTS}
    probes = {(s["channel"], s["probe"]) for s in fams["paymon_probe"]}
    configured = {(c.id, p) for c in rig.app.cfg.channels for p in PROBE_TYPES if getattr(c.probes, p) is not None}
    assert probes == configured == {("main", "query")}
    assert {s["outcome"] for s in fams["paymon_probe"]} == set(OUTCOMES)

    # Counting goes on from the zeros, and a restart on the same metrics keeps what was counted.
    rig.app.metrics.observe_probe(ProbeResult("main", "query", "timeout", 5.0, rig.clock.now()))
    rig.events({"event": "order_created", "order_id": "A1", "channel": "main", "amount": "1.00"})
    rig.app.pipeline.cycle()
    metrics = rig.app.metrics
    rig.app.pipeline.close()
    rig.app.store.close()
    rig.app = rig.start_with(metrics)
    fams = scrape(metrics)
    values = {(s["channel"], s["probe"], s["outcome"]): s["_value"] for s in fams["paymon_probe"]}
    assert values[("main", "query", "timeout")] == "1.0" and values[("main", "query", "ok")] == "0.0"
    ingest = {s["result"]: s["_value"] for s in fams["paymon_ingest_events"]}
    assert ingest == {"accepted": "1.0", "duplicate": "0.0", "rejected": "0.0"}


def test_the_source_label_is_the_configured_name_or_kind_and_file_name(rig: Rig) -> None:
    rig.app.pipeline.cycle()
    assert {s["source"] for s in scrape(rig.app.metrics)["paymon_ingest_lag_seconds"]} == {"jsonl:orders.jsonl"}
    path = rig.folder / "monitor.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("timezone: UTC}", "timezone: UTC, name: shop}"),
                    encoding="utf-8")
    rig.restart()
    rig.app.pipeline.cycle()
    fams = scrape(rig.app.metrics)
    assert {s["source"] for s in fams["paymon_ingest_lag_seconds"]} == {"shop"}
    assert {s["source"] for s in fams["paymon_ingest_events"]} == {"shop"}


def test_routing_weight_and_changes_count_every_change_including_the_operators(rig: Rig) -> None:
    """The weight the shop reads, and changes by kind counted from the audit: a ``paymon weights set`` made in
    another process counts too, and every channel has every kind at 0 from the first cycle."""
    from monitor.routing.operator import set_weight
    from monitor.routing.policy import ChannelRouting

    rig.probes("main", "ok")
    rig.probes("backup", "ok")
    rig.app.pipeline.cycle()
    fams = scrape(rig.app.metrics)
    assert {(s["channel"], s["reason"]): s["_value"] for s in fams["paymon_routing_changes"]} == {
        (ch, kind): "0.0" for ch in ("main", "backup") for kind in ("drain", "reduce", "restore", "operator")}

    rig.probes("main", "timeout", "timeout", "timeout")
    rig.app.pipeline.cycle()
    store = rig.app.store
    edit = set_weight(ChannelRouting("backup", 40, ("alipay",)), store.routing_states()["backup"], 30, holding=[],
                      now=rig.clock.now(), actor="cli:ops")
    store.save_routing([edit.row], edit.changes)  # what `paymon weights set backup 30` records
    rig.app.pipeline.routing.apply(rig.clock.now())
    rig.app.pipeline.cycle()
    fams = scrape(rig.app.metrics)
    assert {s["channel"]: s["_value"] for s in fams["paymon_routing_weight"]} == {"main": "0.0", "backup": "30.0"}
    changes = {(s["channel"], s["reason"]): float(s["_value"]) for s in fams["paymon_routing_changes"]}
    assert {k: v for k, v in changes.items() if v} == {("main", "drain"): 1.0, ("backup", "operator"): 1.0}
    assert len(changes) == 8
