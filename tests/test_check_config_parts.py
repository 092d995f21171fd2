"""``check-config`` warns (exit 0, one ``warning:`` line each on stderr, no traceback) about every configured
part that cannot act; and ``check-config --scenario`` / ``paymon sim`` refuse a scenario naming an unknown
channel (exit 2, one line with the file, the name and a did-you-mean)."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.cli import main

ROOT = Path(__file__).resolve().parent.parent

MONITOR = """\
storage: {url: "sqlite:///var/paymon.db"}
sources: [{kind: jsonl, path: var/orders.jsonl}]
rules:
  - {name: channel_down, signal: probe_failures_in_a_row, op: ">=", threshold: 3}
  - {name: low_success, signal: success_ratio, op: "<", threshold: 0.5}
notify: {language: en}
"""
CHANNELS = """\
channels:
  - id: epay-main
    kind: epay
    methods: [alipay]
    weight: 60
    endpoint: "http://127.0.0.1:9/epay-main"
    credentials: {pid: "1001", key: "main-key-123456"}
    probes: {query: {every: 30s, timeout: 5s}}
  - id: epay-backup
    kind: epay
    methods: [alipay]
    weight: 40
    endpoint: "http://127.0.0.1:9/epay-backup"
    credentials: {pid: "1002", key: "backup-key-123456"}
    probes: {query: {every: 30s, timeout: 5s}}
"""
TELEGRAM = '  telegram: {token: "123456:telegram-token-abcdef", chats: [{id: 1}]}\n'


def write(folder: Path, monitor: str = MONITOR, channels: str = CHANNELS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "monitor.yaml").write_text(monitor, encoding="utf-8")
    (folder / "channels.yaml").write_text(channels, encoding="utf-8")
    return folder / "monitor.yaml"


def check(cfg: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, list[str]]:
    code = main(["check-config", "-c", str(cfg), *extra])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err.splitlines()


def test_a_config_whose_parts_all_act_has_no_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check(write(tmp_path), capsys) == (0, [])


@pytest.mark.parametrize(
    ("monitor", "channels", "expected"),
    [
        (MONITOR.replace("notify: {language: en}\n", "notify:\n  language: en\n" + TELEGRAM), CHANNELS,
         "warning: notify.telegram is configured, but this paymon has no Telegram sender: nothing is sent to "
         "Telegram (notifications go to the console instead)"),
        (MONITOR.replace("notify: {language: en}", "notify: {language: en, console: false}"), CHANNELS,
         "warning: notify: no notifier is configured (console is off and there is no other sink): alerts, lost "
         "orders and failing evaluation cycles are recorded but reach no one"),
        (MONITOR.replace("sources: [{kind: jsonl, path: var/orders.jsonl}]\n", ""),
         CHANNELS.replace("    probes: {query: {every: 30s, timeout: 5s}}\n", "", 1),
         "warning: channel epay-main: no probe is configured and no order source brings its orders: nothing "
         "watches it"),
        (MONITOR, CHANNELS.replace("    probes: {query: {every: 30s, timeout: 5s}}\n", "", 1),
         "warning: channel epay-main: no probe is configured: only its orders can tell whether it works"),
        (MONITOR, CHANNELS.replace("  - id: epay-backup\n    kind: epay\n", "  - id: epay-backup\n    kind: http\n")
         .replace("probes: {query: {every: 30s, timeout: 5s}}\n",
                  "probes: {query: {every: 30s, timeout: 5s}, balance: {every: 5m}}\n", 2)
         .replace('credentials: {pid: "1002", key: "backup-key-123456"}', "credentials: {}"),
         "warning: channel epay-backup: probe balance is not supported for kind http; it will not run"),
        (MONITOR.replace("notify:", "  - {name: low_balance, signal: unsettled_balance, op: \">\", "
                                                  "threshold: 100}\nnotify:"), CHANNELS,
         "warning: rule low_balance: unsettled_balance comes from the balance probe, which no channel it applies "
         "to runs; it can never fire"),
        (MONITOR.replace("notify:", "  - {name: slow_orders, signal: probe_latency_p95, probe: test_order, "
                                    "op: \">\", threshold: 5}\nnotify:"), CHANNELS,
         "warning: rule slow_orders: watches probe test_order, which no channel it applies to runs; it can never "
         "fire"),
        (MONITOR.replace("sources: [{kind: jsonl, path: var/orders.jsonl}]\n", ""), CHANNELS,
         "warning: rule low_success: success_ratio comes from the orders, and no order source brings those of the "
         "channels it applies to; it can never fire"),
        (MONITOR.replace("notify:", "  - {name: gold_down, signal: probe_failures_in_a_row, op: \">=\", "
                                    "threshold: 3, tier: special}\nnotify:"), CHANNELS,
         "warning: rule gold_down: applies to no configured channel; it can never fire"),
        (MONITOR.replace("notify:", "  - {name: drift, signal: orders, op: \"<\", threshold: 1, detector: cusum}\n"
                                    "notify:"), CHANNELS,
         "warning: rule drift: detector cusum cannot watch signal orders (it watches success_ratio or "
         "probe_success_ratio); the rule is skipped"),
    ],
    ids=["telegram-without-sender", "no-notifier", "channel-watched-by-nothing",
         "channel-without-probe", "probe-unsupported-for-kind", "balance-rule-without-balance-probe",
         "probe-rule-naming-a-probe-no-channel-has", "order-rule-without-order-source", "rule-scope-empty",
         "detector-on-wrong-signal"],
)
def test_each_part_that_cannot_act_is_one_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str], monitor: str,
                                                  channels: str, expected: str) -> None:
    code, lines = check(write(tmp_path, monitor, channels), capsys)
    assert code == 0
    assert expected in lines, lines
    assert all(line.startswith("warning: ") for line in lines)
    assert "telegram-token-abcdef" not in "\n".join(lines)


def test_the_shipped_scenarios_name_shipped_channels(capsys: pytest.CaptureFixture[str]) -> None:
    scenarios = sorted((ROOT / "config" / "scenarios").glob("*.yaml"))
    args = [a for path in scenarios for a in ("--scenario", str(path))]
    assert main(["check-config", "-c", str(ROOT / "config" / "monitor.yaml"), *args]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_a_scenario_naming_an_unknown_channel_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path / "cfg")
    good = tmp_path / "good.yaml"
    good.write_text("steps:\n  - {at: 1m, channel: epay-main, set: {error_rate: 1.0}}\n", encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text("duration: 2m\nsteps:\n  - at: 1m\n    channel: epay-mian\n    set: {error_rate: 1.0}\n",
                   encoding="utf-8")
    assert check(cfg, capsys, "--scenario", str(good)) == (0, [])
    want = f"paymon: {bad}:4 steps[0].channel: unknown channel 'epay-mian'; did you mean 'epay-main'?"
    assert check(cfg, capsys, "--scenario", str(good), "--scenario", str(bad)) == (2, [want])
    assert main(["sim", "-c", str(cfg), "--scenario", str(bad)]) == 2
    assert capsys.readouterr().err.splitlines() == [want]
    far = tmp_path / "far.yaml"
    far.write_text("steps: [{at: 1m, channel: stripe-eu, reset: true}]\n", encoding="utf-8")
    code, lines = check(cfg, capsys, "--scenario", str(far))
    assert (code, lines) == (2, [f"paymon: {far}:1 steps[0].channel: unknown channel 'stripe-eu' "
                                 "(channels: epay-backup, epay-main)"])
