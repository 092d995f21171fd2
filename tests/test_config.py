"""Config loading: the shipped files, durations, ${VAR} expansion, errors that name file, line and field."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.cli import main
from monitor.config import (
    Action,
    ChannelConfig,
    DujiaokaSource,
    HttpConfig,
    JsonlSource,
    LoadedConfig,
    Rule,
    YamlSink,
    load_config,
    parse_duration,
)
from monitor.config.expand import expand_env
from monitor.config.settings import absolute_sqlite_url
from monitor.errors import ConfigError
from monitor.secret import Secret

ROOT = Path(__file__).resolve().parents[1]

CHANNELS = """\
channels:
  - id: epay-main
    name: Main
    kind: epay
    tier: primary
    methods: [alipay, wxpay]
    weight: 60
    endpoint: http://127.0.0.1:8950/epay-main/
    credentials:
      pid: 1001
      key: "${EPAY_MAIN_KEY:-sim-key}"
    probes:
      query: {every: 30s, timeout: 5s}
  - id: alipay-f2f
    kind: alipay_f2f
    tier: backup
    methods: [alipay]
    weight: 100
    endpoint: http://127.0.0.1:8950/alipay-f2f/
"""

MONITOR = """\
storage: {url: "sqlite:///data/paymon.db"}
rules:
  - name: channel_down
    signal: probe_failures_in_a_row
    threshold: 3
    severity: critical
    actions: [notify, drain]
"""


def write(directory: Path, monitor: str = MONITOR, channels: str = CHANNELS) -> Path:
    """Write both files into ``directory``; return the monitor.yaml path."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "channels.yaml").write_text(textwrap.dedent(channels), encoding="utf-8")
    path = directory / "monitor.yaml"
    path.write_text(textwrap.dedent(monitor), encoding="utf-8")
    return path


def problems_of(path: Path | str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={} if env is None else env)
    return caught.value.problems


# --- the shipped configs --------------------------------------------------------------------------


def test_shipped_configs_load_with_an_empty_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    loaded = load_config("config/monitor.yaml", env={})
    assert [c.id for c in loaded.channels] == ["epay-main", "epay-backup"]  # alipay-f2f needs real keys
    assert [(c.kind, c.tier, c.weight, c.methods) for c in loaded.channels] == [
        ("epay", "primary", 60, ("alipay", "wxpay")),
        ("epay", "backup", 40, ("alipay", "wxpay")),
    ]
    assert all(c.endpoint == f"http://127.0.0.1:8950/{c.id}/" for c in loaded.channels)
    assert loaded.monitor_path == ROOT / "config" / "monitor.yaml"
    assert loaded.channels_path == ROOT / "config" / "channels.yaml"
    assert loaded.monitor.storage.url == f"sqlite:///{ROOT}/var/paymon.db"
    assert loaded.monitor.sources == (
        JsonlSource(path=ROOT / "var" / "shop" / "orders.jsonl", timezone="Asia/Shanghai"),
    )
    assert [r.name for r in loaded.monitor.rules] == ["channel_down", "merchant_banned", "low_success"]
    assert loaded.monitor.rules[2].detector == "early" and loaded.monitor.rules[2].threshold is None
    # paymon writes the operator's untracked copy, seeded from the shipped example, never the example itself.
    assert loaded.monitor.routing.sink == YamlSink(path=ROOT / "var" / "channels.yaml",
                                                   seed=ROOT / "config" / "channels.yaml")
    assert loaded.monitor.http.listen == "127.0.0.1:9108"
    assert load_config("config/monitor.yaml", env={"PAYMON_HTTP_LISTEN": "127.0.0.1:0"}).monitor.http.listen == (
        "127.0.0.1:0")
    assert loaded.channel("epay-main").credentials["key"].reveal() == "sim-epay-main-key"


def test_shipped_configs_take_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    loaded = load_config("config/monitor.yaml", env={"EPAY_MAIN_KEY": "from-the-env-1234"})
    assert loaded.channel("epay-main").credentials["key"] == Secret("from-the-env-1234")
    assert loaded.redactor("key=from-the-env-1234") == "key=***"


def test_defaults_of_an_empty_monitor_yaml(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, monitor=""), env={})
    config = loaded.monitor
    assert config.storage.url == f"sqlite:///{tmp_path}/var/paymon.db"
    assert config.storage.retention.probes == timedelta(days=14)
    assert (config.http.host, config.http.port, config.http.enabled) == ("127.0.0.1", 9108, True)
    assert config.defaults.windows == ("5m", "15m", "1h", "24h")
    assert config.defaults.pay_timeout == timedelta(minutes=15)
    assert config.reconcile.older_than == timedelta(minutes=5)
    assert (config.notify.language, config.notify.console, config.notify.telegram) == ("zh", True, None)
    assert config.routing.mode == "auto"
    assert config.routing.sink == YamlSink(path=tmp_path / "channels.yaml")
    assert config.routing.restore.steps == (0.25, 0.5, 1.0)
    assert config.channels == tmp_path / "channels.yaml"
    assert config.sources == () and config.rules == ()


def test_channel_defaults_and_coercions(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path), env={})
    main, f2f = loaded.channels
    assert main.credentials["pid"] == Secret("1001")
    assert f2f.name == "alipay-f2f"
    assert f2f.timezone == "Asia/Shanghai"
    assert f2f.probes.query is None and f2f.fee_rate == 0.0
    assert main.probes.query is not None and main.probes.query.every == timedelta(seconds=30)
    with pytest.raises(KeyError):
        loaded.channel("nope")


# --- durations ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("14d", 14 * 86400),
        ("500ms", 0.5),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("1w", 7 * 86400),
        ("1.5h", 5400),
        ("0s", 0),
        (" 15m ", 900),
        ("90", 90),
        (30, 30),
        (0, 0),
        (2.5, 2.5),
    ],
)
def test_parse_duration_accepts(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text", ["30x", "", "s", "5 minutes", "1h-30m", "5M", "-5s", "h1", "1..5s", -1, True]
)
def test_parse_duration_rejects(text: str | int | float) -> None:
    with pytest.raises(ValueError, match=r"^expected a duration like '30s', got "):
        parse_duration(text)


# --- ${VAR} expansion -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "env", "expanded", "from_env", "errors"),
    [
        ("plain", {}, "plain", (), ()),
        ("${A}", {"A": "x1"}, "x1", ("x1",), ()),
        ("pre-${A}-post", {"A": "x1"}, "pre-x1-post", ("x1",), ()),
        ("$${A}", {"A": "x1"}, "${A}", (), ()),
        ("cost $5 and $$", {}, "cost $5 and $", (), ()),
        ("${A:-fallback}", {}, "fallback", (), ()),
        ("${A:-fallback}", {"A": ""}, "fallback", (), ()),
        ("${A:-fallback}", {"A": "set"}, "set", ("set",), ()),
        ("${A:-}", {}, "", (), ()),
        ("${A}", {}, "", (), ("environment variable A is not set",)),
        ("${A", {}, "", (), ("unterminated '${' (write '$$' for a literal '$')",)),
        ("${1A}", {}, "", (), ("invalid '${...}' reference: a variable name is letters, digits and '_' "
                                "(write '$$' for a literal '$')",)),
    ],
)  # fmt: skip
def test_expand_env(
    text: str, env: dict[str, str], expanded: str, from_env: tuple[str, ...], errors: tuple[str, ...]
) -> None:
    result = expand_env(text, env)
    assert (result.text, result.from_env, result.errors) == (expanded, from_env, errors)


@given(st.text())
def test_escaping_every_dollar_gives_the_text_back(text: str) -> None:
    result = expand_env(text.replace("$", "$$"), {"A": "never used"})
    assert (result.text, result.from_env, result.errors) == (text, (), ())


@given(st.integers(min_value=0, max_value=10_000), st.sampled_from(["ms", "s", "m", "h", "d", "w"]))
def test_durations_scale_by_their_unit(amount: int, unit: str) -> None:
    seconds = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    assert parse_duration(f"{amount}{unit}") == timedelta(seconds=amount * seconds)


def test_dollar_escape_and_default_reach_the_config(tmp_path: Path) -> None:
    monitor = """\
    sources:
      - kind: jsonl
        path: "shop$$1/$x/${SHOP_LOG:-orders.jsonl}"
    """
    loaded = load_config(write(tmp_path, monitor), env={})
    assert loaded.monitor.sources == (JsonlSource(path=tmp_path / "shop$1" / "$x" / "orders.jsonl"),)
    loaded = load_config(write(tmp_path, monitor), env={"SHOP_LOG": "other.jsonl"})
    assert loaded.monitor.sources == (JsonlSource(path=tmp_path / "shop$1" / "$x" / "other.jsonl"),)


# --- broken configs: one problem each, with file, line and field ----------------------------------


@dataclass(frozen=True)
class Broken:
    """One broken config: replace ``old`` by ``new`` in one file; expect a problem at ``where``."""

    id: str
    file: str
    old: str
    new: str
    where: str  # "channels.yaml:13 channels[epay-main].every" (file:line field), or just "file:line"
    fragment: str


BROKEN = [
    Broken(
        "bad duration", "channels", "every: 30s", "every: 30x",
        "channels.yaml:13 channels[epay-main].probes.query.every",
        "expected a duration like '30s', got '30x'",
    ),
    Broken(
        "unknown key", "channels", "    weight: 60", "    wieght: 60",
        "channels.yaml:7 channels[epay-main].wieght",
        "unknown key 'wieght' (expected one of: id, name, kind, tier, methods, weight,",
    ),
    Broken(
        "did you mean", "channels", "    weight: 60", "    wieght: 60",
        "channels.yaml:7 channels[epay-main].wieght", "; did you mean 'weight'?",
    ),
    Broken(
        "missing required field", "channels", "    kind: alipay_f2f\n", "",
        "channels.yaml:14 channels[alipay-f2f].kind", "required key is missing",
    ),
    Broken(
        "missing required after a typo", "channels", "    weight: 60", "    wieght: 60",
        "channels.yaml:2 channels[epay-main].weight", "required key is missing",
    ),
    Broken(
        "missing variable", "channels", "${EPAY_MAIN_KEY:-sim-key}", "${EPAY_MAIN_KEY}",
        "channels.yaml:11 channels[epay-main].credentials.key",
        "environment variable EPAY_MAIN_KEY is not set",
    ),
    Broken(
        "invalid variable", "channels", "${EPAY_MAIN_KEY:-sim-key}", "${EPAY-MAIN-KEY}",
        "channels.yaml:11 channels[epay-main].credentials.key", "invalid '${...}' reference",
    ),
    Broken(
        "wrong type", "channels", "weight: 100", "weight: lots",
        "channels.yaml:18 channels[alipay-f2f].weight", "expected a whole number, got 'lots'",
    ),
    Broken(
        "wrong type bool", "monitor", "severity: critical", "severity: critical\n    op: true",
        "monitor.yaml:7 rules[channel_down].op", "expected one of: <, <=, >, >=, ==, !=, got true",
    ),
    Broken(
        "wrong type list", "monitor", "[notify, drain]", "notify",
        "monitor.yaml:7 rules[channel_down].actions", "expected a list, got 'notify'",
    ),
    Broken(
        "duplicate channel id", "channels", "id: alipay-f2f", "id: epay-main",
        "channels.yaml:14 channels[epay-main].id",
        "duplicate channel id 'epay-main' (first used on line 2)",
    ),
    Broken(
        "unknown channel in a rule", "monitor", "severity: critical", "channels: [epay-mian]",
        "monitor.yaml:6 rules[channel_down].channels[0]",
        "unknown channel 'epay-mian' (channels.yaml defines: epay-main, alipay-f2f); "
        "did you mean 'epay-main'?",
    ),
    Broken(
        "bad recover side below", "monitor", "threshold: 3", 'op: "<"\n    threshold: 0.8\n    recover: 0.7',
        "monitor.yaml:7 rules[channel_down].recover",
        "must be on the healthy side of the threshold: with op '<' the alert fires below 0.8, "
        "so recover must be >= 0.8 (got 0.7)",
    ),
    Broken(
        "bad recover side above", "monitor", "threshold: 3", "threshold: 3\n    recover: 4",
        "monitor.yaml:6 rules[channel_down].recover", "so recover must be <= 3 (got 4)",
    ),
    Broken(
        "yaml syntax error", "monitor", "actions: [notify, drain]", "actions: [notify, drain",
        "monitor.yaml:8", "YAML syntax error: ",
    ),
    Broken(
        "duplicate yaml key", "channels", "    weight: 60", "    weight: 60\n    weight: 61",
        "channels.yaml:8", "duplicate key 'weight'",
    ),
    Broken(
        "channels and tier", "monitor", "severity: critical", "channels: [epay-main]\n    tier: primary",
        "monitor.yaml:7 rules[channel_down].tier", "give either 'channels' or 'tier', not both",
    ),
    Broken(
        "unknown inhibited rule", "monitor", "severity: critical", "inhibits: [low_succes]",
        "monitor.yaml:6 rules[channel_down].inhibits[0]",
        "unknown rule 'low_succes' (rules are: channel_down)",
    ),
    Broken(
        "bad action", "monitor", "[notify, drain]", "[notify, {reduce_weight: 1.5}]",
        "monitor.yaml:7 rules[channel_down].actions[1]",
        "reduce_weight takes a factor between 0 and 1",
    ),
    Broken(
        "threshold required", "monitor", "    threshold: 3\n", "",
        "monitor.yaml:3 rules[channel_down].threshold", "required (unless the rule uses a 'detector')",
    ),
    Broken(
        "unknown source kind", "monitor", "rules:", "sources:\n  - {kind: csv, path: x}\nrules:",
        "monitor.yaml:3 sources[0].kind",
        "unknown kind 'csv' (expected one of: jsonl, nginx, dujiaoka)",
    ),
    Broken(
        "source to unknown channel", "monitor", "rules:",
        "sources:\n  - kind: nginx\n    path: access.log\n    callbacks: {/pay/notify: nope}\nrules:",
        "monitor.yaml:5 sources[0].callbacks['/pay/notify']", "unknown channel 'nope'",
    ),
    Broken(
        "bad time zone", "channels", "kind: alipay_f2f", "kind: alipay_f2f\n    timezone: Asia/Peking",
        "channels.yaml:16 channels[alipay-f2f].timezone", "unknown time zone 'Asia/Peking'",
    ),
    Broken(
        "bad currency", "channels", "kind: alipay_f2f", "kind: alipay_f2f\n    currency: RMB1",
        "channels.yaml:16 channels[alipay-f2f].currency",
        "expected an ISO 4217 currency code of three letters like 'USD' or 'CNY', got 'RMB1'",
    ),
    Broken(
        "currency fixed by the protocol", "channels", "kind: alipay_f2f", "kind: alipay_f2f\n    currency: usd",
        "channels.yaml:16 channels[alipay-f2f].currency",
        "a channel of kind 'alipay_f2f' always charges in CNY (its protocol has no currency field): remove "
        "'currency' or set it to CNY",
    ),
    Broken(
        "bad listen", "monitor", "rules:", "http: {listen: 'localhost:70000'}\nrules:",
        "monitor.yaml:2 http.listen", "expected host:port like '127.0.0.1:9108' (port 0-65535)",
    ),
    Broken(
        "restore steps", "monitor", "rules:", "routing: {restore: {steps: [0.5, 0.8]}}\nrules:",
        "monitor.yaml:2 routing.restore.steps", "the last step must be 1.0",
    ),
    Broken(
        "missing sink file", "monitor", "rules:", "routing: {sink: {kind: yaml, path: w.yaml}}\nrules:",
        "monitor.yaml:2 routing.sink.path", "no such file: w.yaml",
    ),
    Broken(
        "missing file of a second sink", "monitor", "rules:",
        "routing: {sinks: [{kind: yaml}, {kind: yaml, path: w.yaml}]}\nrules:",
        "monitor.yaml:2 routing.sinks[1].path", "no such file: w.yaml",
    ),
    Broken(
        "same source label", "monitor", "rules:",
        "sources: [{kind: jsonl, path: a/o.jsonl}, {kind: jsonl, path: b/o.jsonl}]\nrules:",
        "monitor.yaml:2 sources[1]",
        "would have the same metric label as the source of line 2 ('jsonl:o.jsonl'); give one of them a distinct "
        "'name'",
    ),
    Broken(
        "missing sink seed", "monitor", "rules:",
        "routing: {sink: {kind: yaml, path: var/w.yaml, seed: x.yaml}}\nrules:",
        "monitor.yaml:2 routing.sink.seed", "no such file: x.yaml",
    ),
    Broken(
        "sink folder is a file", "monitor", "rules:",
        "routing: {sink: {kind: yaml, path: channels.yaml/w.yaml, seed: channels.yaml}}\nrules:",
        "monitor.yaml:2 routing.sink.path", "cannot create channels.yaml/w.yaml: ",
    ),
    Broken(
        "no channels", "channels", CHANNELS, "channels: []\n",
        "channels.yaml:1 channels", "list at least one channel",
    ),
    Broken(
        "top level list", "channels", CHANNELS, "- id: x\n",
        "channels.yaml:1", "expected a mapping of keys at the top level",
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", BROKEN, ids=[case.id for case in BROKEN])
def test_broken_config_names_file_line_and_field(tmp_path: Path, case: Broken) -> None:
    texts = {"monitor": MONITOR, "channels": CHANNELS}
    assert case.old in texts[case.file], "the case must change something"
    texts[case.file] = texts[case.file].replace(case.old, case.new, 1)
    found = problems_of(write(tmp_path, texts["monitor"], texts["channels"]))
    prefix = f"{tmp_path}/{case.where}{':' if ' ' in case.where else ''} "
    assert any(p.startswith(prefix) and case.fragment in p for p in found), found


def test_messages_name_files_as_the_operator_did(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "config", channels=CHANNELS.replace("every: 30s", "every: 30x"))
    monkeypatch.chdir(tmp_path)
    assert problems_of("config/monitor.yaml") == [
        "config/channels.yaml:13 channels[epay-main].probes.query.every: "
        "expected a duration like '30s', got '30x'"
    ]


def test_every_problem_of_both_files_is_reported_at_once(tmp_path: Path) -> None:
    monitor = MONITOR.replace("threshold: 3", "threshold: 3\n    for: soon")
    channels = CHANNELS.replace("weight: 60", "weight: -1").replace("every: 30s", "every: 30x")
    found = problems_of(write(tmp_path, monitor, channels))
    assert [p.split(" ", 2)[:2] for p in found] == [
        [f"{tmp_path}/monitor.yaml:6", "rules[channel_down].for:"],
        [f"{tmp_path}/channels.yaml:7", "channels[epay-main].weight:"],
        [f"{tmp_path}/channels.yaml:13", "channels[epay-main].probes.query.every:"],
    ]


@pytest.mark.parametrize(
    ("monitor", "expected"),
    [
        (None, "{dir}/monitor.yaml: no such file"),
        ("channels: elsewhere.yaml\n", "{dir}/monitor.yaml:1 channels: no such file: {dir}/elsewhere.yaml"),
    ],
)
def test_missing_files(tmp_path: Path, monitor: str | None, expected: str) -> None:
    if monitor is not None:
        (tmp_path / "monitor.yaml").write_text(monitor, encoding="utf-8")
    assert problems_of(tmp_path / "monitor.yaml") == [expected.format(dir=tmp_path)]


def test_missing_channels_file_beside_monitor_yaml(tmp_path: Path) -> None:
    (tmp_path / "monitor.yaml").write_text(MONITOR, encoding="utf-8")
    assert problems_of(tmp_path / "monitor.yaml") == [f"{tmp_path}/channels.yaml: no such file"]


def test_a_sink_file_to_be_seeded_may_not_exist_yet(tmp_path: Path) -> None:
    path = write(tmp_path, MONITOR.replace("rules:", "routing: {sink: {kind: yaml, path: var/w.yaml, "
                                                     "seed: channels.yaml}}\nrules:", 1))
    loaded = load_config(path, env={})
    assert loaded.monitor.routing.sink == YamlSink(path=tmp_path / "var" / "w.yaml", seed=tmp_path / "channels.yaml")
    assert not (tmp_path / "var").exists()  # checking creates nothing


def test_a_missing_variable_is_reported_once(tmp_path: Path) -> None:
    found = problems_of(
        write(tmp_path, channels=CHANNELS.replace("${EPAY_MAIN_KEY:-sim-key}", "${EPAY_MAIN_KEY}"))
    )
    assert found == [
        f"{tmp_path}/channels.yaml:11 channels[epay-main].credentials.key: "
        "environment variable EPAY_MAIN_KEY is not set"
    ]


# --- secrets --------------------------------------------------------------------------------------

SECRET = "s3cr3t-Value-9f8e7d"


def test_a_loaded_secret_never_shows(tmp_path: Path) -> None:
    monitor = MONITOR.replace("sqlite:///data/paymon.db", "postgresql://paymon:${DB_PASSWORD}@db/paymon")
    env = {"EPAY_MAIN_KEY": SECRET, "DB_PASSWORD": "db-pass-4242"}
    loaded = load_config(write(tmp_path, monitor), env=env)
    channel = loaded.channel("epay-main")
    assert channel.credentials["key"].reveal() == SECRET
    for text in (repr(loaded), str(loaded), str(channel), repr(channel), f"{channel.credentials}"):
        assert SECRET not in text
        assert "db-pass-4242" not in text
    assert loaded.redactor(f"sign={SECRET}&db=db-pass-4242") == "sign=***&db=***"
    assert loaded.monitor.storage.url == "postgresql://paymon:db-pass-4242@db/paymon"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("    weight: 60", "    weight: 60\n    wieght: oops"),
        ('key: "${EPAY_MAIN_KEY:-sim-key}"', 'key: ["${EPAY_MAIN_KEY}"]'),
        ('key: "${EPAY_MAIN_KEY:-sim-key}"', 'key: {inner: "${EPAY_MAIN_KEY}"}'),
        (
            '    credentials:\n      pid: 1001\n      key: "${EPAY_MAIN_KEY:-sim-key}"\n',
            f"    credentials: {SECRET}\n",
        ),
        ("kind: alipay_f2f", "kind: alipay_f2f\n    timezone: ${EPAY_MAIN_KEY}"),
        ("kind: alipay_f2f", "kind: alipay_f2f\n    weight: ${EPAY_MAIN_KEY}"),
        ("kind: alipay_f2f", "kind: ${EPAY_MAIN_KEY}"),
    ],
    ids=["other-error", "list", "mapping", "literal-in-credentials", "timezone", "weight", "kind"],
)
def test_a_secret_never_appears_in_config_errors(tmp_path: Path, old: str, new: str) -> None:
    assert old in CHANNELS
    found = problems_of(
        write(tmp_path, channels=CHANNELS.replace(old, new, 1)), env={"EPAY_MAIN_KEY": SECRET}
    )
    assert found
    assert all(SECRET not in problem for problem in found), found


# --- models ---------------------------------------------------------------------------------------


def channel(id: str = "c1", tier: str = "primary") -> ChannelConfig:
    return ChannelConfig.model_validate(
        {"id": id, "kind": "epay", "tier": tier, "weight": 1, "endpoint": "https://pay.example.com/"}
    )


@pytest.mark.parametrize(
    ("scope", "target", "applies"),
    [
        ({}, channel(), True),
        ({"channels": ["c1", "c2"]}, channel("c2"), True),
        ({"channels": ["c1"]}, channel("c2"), False),
        ({"tier": "backup"}, channel(tier="backup"), True),
        ({"tier": "backup"}, channel(tier="primary"), False),
    ],
)
def test_rule_applies_to(scope: dict[str, object], target: ChannelConfig, applies: bool) -> None:
    rule = Rule.model_validate({"name": "r", "signal": "orders", "threshold": 1, **scope})
    assert rule.applies_to(target) is applies


@pytest.mark.parametrize(
    ("signal", "probe", "window"),
    [
        ("probe_failures_in_a_row", "query", None),
        ("probe_success_ratio", "query", "15m"),
        ("success_ratio", None, "15m"),
        ("pending_orders", None, None),
    ],
)
def test_rule_defaults_follow_the_signal(signal: str, probe: str | None, window: str | None) -> None:
    rule = Rule.model_validate({"name": "r", "signal": signal, "threshold": 1, "for": "2m"})
    assert (rule.probe, rule.window, rule.for_, rule.actions) == (
        probe,
        window,
        timedelta(minutes=2),
        (Action(kind="notify"),),
    )


@pytest.mark.parametrize(
    ("yaml_value", "action"),
    [
        ("notify", Action(kind="notify")),
        ("drain", Action(kind="drain")),
        ({"reduce_weight": 0.5}, Action(kind="reduce_weight", factor=0.5)),
    ],
)
def test_actions_are_normalised(yaml_value: object, action: Action) -> None:
    rule = Rule.model_validate({"name": "r", "signal": "orders", "threshold": 1, "actions": [yaml_value]})
    assert rule.actions == (action,)


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [("127.0.0.1:9108", "127.0.0.1", 9108), ("0.0.0.0:0", "0.0.0.0", 0), ("[::1]:80", "::1", 80)],
)
def test_http_listen(listen: str, host: str, port: int) -> None:
    http = HttpConfig(listen=listen)
    assert (http.host, http.port) == (host, port)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///var/p.db", "sqlite:////base/dir/var/p.db"),
        ("sqlite:///../var/p.db", "sqlite:////base/var/p.db"),
        ("sqlite+pysqlite:///p.db?timeout=5", "sqlite+pysqlite:////base/dir/p.db?timeout=5"),
        ("sqlite:////abs/p.db", "sqlite:////abs/p.db"),
        ("sqlite://", "sqlite://"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("postgresql+psycopg://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
    ],
)
def test_sqlite_urls_are_made_absolute(url: str, expected: str) -> None:
    assert absolute_sqlite_url(url, Path("/base/dir")) == expected


def test_source_ids_hold_no_secrets() -> None:
    source = DujiaokaSource.model_validate(
        {"url": "mysql+pymysql://reader:pw-1234@10.0.0.5/dujiaoka", "channels": {15: "epay-main"}}
    )
    assert source.source_id == "dujiaoka:10.0.0.5"
    assert "pw-1234" not in repr(source)
    assert JsonlSource(path=Path("/x/o.jsonl"), name="shop").source_id == "shop"
    assert JsonlSource(path=Path("/x/o.jsonl")).label == "jsonl:o.jsonl"  # the metric label names no folder
    assert source.label == "dujiaoka:10.0.0.5"


def test_test_order_amount_is_a_decimal(tmp_path: Path) -> None:
    channels = CHANNELS.replace("query: {every: 30s, timeout: 5s}", "test_order: {amount: 0.01}")
    loaded: LoadedConfig = load_config(write(tmp_path, channels=channels), env={})
    probe = loaded.channel("epay-main").probes.test_order
    assert probe is not None and probe.amount == Decimal("0.01") and probe.close is True


def channel_of(kind: str, **extra: object) -> ChannelConfig:
    return ChannelConfig.model_validate({"id": "c", "kind": kind, "weight": 1, "endpoint": "https://p.example.com/",
                                         **extra})


@pytest.mark.parametrize(("kind", "currency"), [
    ("epay", "CNY"), ("epay_v2", "CNY"), ("alipay_f2f", "CNY"), ("wxpay_v2", "CNY"), ("epusdt", "CNY"),
    ("stripe", "CNY"), ("paypal", "USD"), ("http", None),
])
def test_currency_defaults_per_kind(kind: str, currency: str | None) -> None:
    assert channel_of(kind).currency == currency


@pytest.mark.parametrize(("kind", "given", "stored"), [
    ("stripe", "usd", "USD"), ("stripe", "JPY", "JPY"), ("paypal", "Eur", "EUR"), ("epay", "cny", "CNY"),
    ("http", "usd", "USD"),
])
def test_currency_is_stored_uppercase(kind: str, given: str, stored: str) -> None:
    assert channel_of(kind, currency=given).currency == stored


@pytest.mark.parametrize("bad", ["US", "USDT", "U$D", "12", ""])
def test_currency_must_be_three_letters(tmp_path: Path, bad: str) -> None:
    channels = CHANNELS.replace("kind: epay\n", f"kind: epay\n    currency: '{bad}'\n")
    [problem] = problems_of(write(tmp_path, channels=channels))
    assert problem.startswith(f"{tmp_path}/channels.yaml:5 channels[epay-main].currency: expected an ISO 4217"), \
        problem


def test_a_currency_config_error_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    channels = CHANNELS.replace("kind: epay\n", "kind: epay\n    currency: USD\n")
    path = write(tmp_path, channels=channels)
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}/channels.yaml:5 channels[epay-main].currency: a channel of kind 'epay' always" in err
    assert "Traceback" not in err
