"""Load and validate ``config/monitor.yaml`` and ``config/channels.yaml``.

``load_config(path)`` returns a frozen :class:`LoadedConfig` or raises one
:class:`~monitor.errors.ConfigError` listing every problem of both files as ``file:line field.path: message``.
Strings are expanded from the environment first (``${VAR}``, ``${VAR:-default}``, ``$$``), and every value
that came from the environment or sits in a secret field is known to ``LoadedConfig.redactor``.

Modules: ``durations`` (``30s``/``1h30m``), ``expand`` (``${VAR}``), ``document`` (YAML with line numbers),
``fields`` (shared field types), ``channels`` / ``rules`` / ``settings`` (the models), ``problems``
(pydantic errors in plain words), ``checks`` (cross-item and cross-file references), ``loader``.
"""

from monitor.config.channels import (
    CHANNEL_KINDS,
    TIERS,
    BalanceProbe,
    ChannelConfig,
    ChannelsFile,
    Expect,
    Probes,
    QueryProbe,
    TestOrderProbe,
)
from monitor.config.durations import DURATION_HINT, parse_duration
from monitor.config.loader import LoadedConfig, load_config, load_model
from monitor.config.rules import PROBE_SIGNALS, SIGNALS, UNWINDOWED_SIGNALS, Action, Rule
from monitor.config.settings import (
    EVENT_FIELDS,
    Chat,
    Defaults,
    DujiaokaSource,
    HttpConfig,
    JsonlSource,
    MonitorConfig,
    NginxSource,
    Notify,
    Reconcile,
    Restore,
    Retention,
    Routing,
    RoutingSink,
    Source,
    SqlSink,
    StorageConfig,
    Telegram,
    WebhookSink,
    YamlSink,
)

__all__ = [
    "CHANNEL_KINDS",
    "DURATION_HINT",
    "EVENT_FIELDS",
    "PROBE_SIGNALS",
    "SIGNALS",
    "TIERS",
    "UNWINDOWED_SIGNALS",
    "Action",
    "BalanceProbe",
    "ChannelConfig",
    "ChannelsFile",
    "Chat",
    "Defaults",
    "DujiaokaSource",
    "Expect",
    "HttpConfig",
    "JsonlSource",
    "LoadedConfig",
    "MonitorConfig",
    "NginxSource",
    "Notify",
    "Probes",
    "QueryProbe",
    "Reconcile",
    "Restore",
    "Retention",
    "Routing",
    "RoutingSink",
    "Rule",
    "Source",
    "SqlSink",
    "StorageConfig",
    "Telegram",
    "TestOrderProbe",
    "WebhookSink",
    "YamlSink",
    "load_config",
    "load_model",
    "parse_duration",
]
