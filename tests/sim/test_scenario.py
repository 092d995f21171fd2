"""Scenarios: validated like config files, played on time, and `paymon sim` running one end to end."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
from pathlib import Path

import pytest

from monitor.config import load_config
from monitor.errors import ConfigError
from monitor.sim.faults import Faults
from monitor.sim.runner import listen_port, run_sim
from monitor.sim.scenario import Scenario, Step, load_scenario, play, total

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_scenarios_load() -> None:
    names = sorted(p.name for p in (ROOT / "config" / "scenarios").glob("*.yaml"))
    assert names == ["epay-outage.yaml", "lost-callbacks.yaml", "slow-decline.yaml"]
    outage = load_scenario(ROOT / "config" / "scenarios" / "epay-outage.yaml")
    assert [(s.at.total_seconds(), s.channel, s.set, s.reset) for s in outage.steps] == [
        (60.0, "epay-main", {"error_rate": 1.0}, False), (240.0, "epay-main", {}, True)]
    assert total(outage).total_seconds() == 480


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("steps:\n  - {at: 1x, channel: a, set: {error_rate: 1}}\n", "scn.yaml:2 steps[0].at: expected a duration"),
        ("steps:\n  - {at: 1s, channel: a, set: {wobble: 1}}\n", "unknown fault knob 'wobble'"),
        ("steps:\n  - {at: 1s, channel: a, set: {error_rate: 2}}\n", "is a fraction in [0, 1]"),
        ("steps:\n  - {at: 1s, channel: a}\n", "a step needs 'set' (fault knobs) or 'reset: true'"),
        ("durashun: 1m\n", "scn.yaml:1 durashun: unknown key 'durashun'"),
    ],
)
def test_bad_scenarios_name_file_line_and_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str,
                                                message: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scn.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_scenario("scn.yaml")
    assert message in str(exc.value), str(exc.value)


async def test_play_applies_steps_on_time_and_resets() -> None:
    knobs = {"a": Faults(pay_probability=0.9)}
    scenario = Scenario.model_validate({"duration": "0.5s", "steps": [
        {"at": "0.1s", "channel": "a", "set": {"error_rate": 1.0, "pay_probability": 0.2}},
        {"at": "0.3s", "channel": "a", "reset": True},
        {"at": "0.2s", "channel": "missing", "set": {"error_rate": 1.0}},
    ]})
    # What each step left behind, seen the moment it is applied (not after a sleep that a busy machine stretches
    # past the next step), and when, on the loop's clock: never early.
    seen: list[tuple[float, float, float]] = []
    applied_after: list[float] = []
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    def on_step(s: Step) -> None:
        seen.append((round(s.at.total_seconds(), 1), knobs["a"].error_rate, knobs["a"].pay_probability))
        applied_after.append(loop.time() - t0)

    await play(scenario, knobs.__getitem__, on_step)
    assert loop.time() - t0 >= 0.5  # the duration is waited out
    assert (knobs["a"].error_rate, knobs["a"].pay_probability) == (0.0, 0.9)
    assert seen == [(0.1, 1.0, 0.2), (0.3, 0.0, 0.9)]
    assert applied_after[0] >= 0.1 and applied_after[1] >= 0.3


def test_paymon_sim_runs_a_scenario_and_writes_ground_truth(tmp_path: Path) -> None:
    cfg_dir = tmp_path / "config"
    shutil.copytree(ROOT / "config", cfg_dir)
    cfg = load_config(cfg_dir / "monitor.yaml", env={})
    assert listen_port(cfg) == 8950
    scenario = Scenario.model_validate({"duration": "2s", "steps": [
        {"at": "0.5s", "channel": "epay-main", "set": {"error_rate": 1.0}},
        {"at": "1.2s", "channel": "epay-main", "reset": True},
    ]})
    out = io.StringIO()
    truth = tmp_path / "truth.json"
    assert run_sim(cfg, scenario=scenario, port=0, rate=25, truth=truth, out=out) == 0
    text = out.getvalue()
    assert "sim: serving epay-main, epay-backup on http://127.0.0.1:" in text
    # The shop reads its weights from the operator's copy paymon writes, seeded from the untouched example.
    assert (tmp_path / "var" / "channels.yaml").read_bytes() == (cfg_dir / "channels.yaml").read_bytes()
    assert 'sim: t+0.5s epay-main {"error_rate": 1.0}' in text and "sim: t+1.2s epay-main reset" in text
    rows = json.loads(truth.read_text(encoding="utf-8"))
    assert len(rows) >= 10 and {r["channel"] for r in rows} <= {"epay-main", "epay-backup"}
    log = (tmp_path / "var" / "shop" / "orders.jsonl").read_text(encoding="utf-8").splitlines()
    created = [json.loads(line) for line in log if '"order_created"' in line]
    assert len(created) >= len(rows)


def test_paymon_sim_drives_traffic_through_every_servable_kind(tmp_path: Path) -> None:
    cfg_dir = tmp_path / "config"
    cfg_dir.mkdir()
    (cfg_dir / "monitor.yaml").write_text("sources: [{kind: jsonl, path: orders.jsonl}]\n", encoding="utf-8")
    creds = {
        "epay": '{pid: "1001", key: "sim-key-123456"}',
        "wxpay_v2": '{appid: "wx1234567890", mch_id: "10000100", key: "sim-wxpay-key-12345678901234567"}',
        "epusdt": '{token: "sim-epusdt-token"}',
        "stripe": '{secret_key: "sk_test_simsimsimsimsimsim"}',
        "paypal": '{client_id: "sim-client", client_secret: "sim-secret-123"}',
    }
    channels = ["channels:"] + [
        f"  - {{id: {k.replace('_', '-')}, kind: {k}, weight: 10, endpoint: 'http://127.0.0.1:8950/"
        f"{k.replace('_', '-')}/', credentials: {v}}}" for k, v in creds.items()]
    (cfg_dir / "channels.yaml").write_text("\n".join(channels) + "\n", encoding="utf-8")
    cfg = load_config(cfg_dir / "monitor.yaml", env={})
    out = io.StringIO()
    scenario = Scenario.model_validate({"duration": "2.5s"})
    assert run_sim(cfg, scenario=scenario, port=0, rate=40, truth=tmp_path / "truth.json", out=out) == 0
    events = [json.loads(line) for line in (cfg_dir / "orders.jsonl").read_text(encoding="utf-8").splitlines()]
    paid = {e["channel"] for e in events if e["event"] == "order_paid"}
    assert paid == {"epay", "wxpay-v2", "epusdt", "stripe", "paypal"}, out.getvalue()
