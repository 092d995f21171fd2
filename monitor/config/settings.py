"""``config/monitor.yaml``: the daemon's settings (storage, HTTP, sources, rules, notify, routing policy).

Every section is optional; the defaults written here are the only place defaults live. Sections whose
defaults depend on where the file is (the SQLite path, the routing sink, ``channels:``) are validated
even when absent, so those defaults are resolved against the file's directory like values written out.
"""

from __future__ import annotations

import os.path
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from monitor.config.fields import (
    ConfigModel,
    Duration,
    HttpUrl,
    LocalPath,
    PositiveDuration,
    SecretValue,
    Slug,
    TimeZoneName,
    WindowText,
    invalid,
    load_context,
)
from monitor.config.rules import Rule
from monitor.secret import Secret
from monitor.timefmt import DEFAULT_ZONE

__all__ = [
    "EVENT_FIELDS",
    "Chat",
    "Defaults",
    "Display",
    "DujiaokaSource",
    "HttpConfig",
    "JsonlSource",
    "MonitorConfig",
    "NginxSource",
    "Notify",
    "Reconcile",
    "Restore",
    "Retention",
    "Routing",
    "RoutingSink",
    "Smart",
    "Source",
    "SqlSink",
    "StorageConfig",
    "Telegram",
    "WebhookSink",
    "YamlSink",
]

_DB_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SQLITE_URL = re.compile(r"^(sqlite(?:\+[A-Za-z0-9_]+)?):///(.*)$", re.DOTALL)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_DB_URL_HINT = "expected a database URL like 'sqlite:///var/paymon.db' or 'postgresql+psycopg://user:${PASSWORD}@host/db'"
#: Fields of the JSONL order event that a source's ``fields:`` mapping may rename.
EVENT_FIELDS: tuple[str, ...] = (
    "ts", "event", "order_id", "channel", "method", "amount", "trade_no", "paid_at", "verified", "detail",
)  # fmt: skip


#: A row id of a shop table (dujiaoka's ``pays.id``): a positive unsigned 32-bit integer.
RowId = Annotated[int, Field(ge=1, le=2**32 - 1)]
#: Telegram user ids are positive and fit in 52 bits.
MAX_TELEGRAM_ID = 2**52


def _section() -> Any:
    """An optional section that is validated (with the load context) even when the file leaves it out."""
    return Field(default_factory=dict, validate_default=True)


def _db_url(value: str) -> str:
    if not _DB_URL.match(value):
        raise invalid(_DB_URL_HINT)
    return value


def _secret_db_url(value: Secret) -> Secret:
    if not _DB_URL.match(value.reveal()):
        raise invalid(f"{_DB_URL_HINT} (value not shown: it may hold a password)")
    return value


def _identifier(value: str) -> str:
    if not _IDENTIFIER.fullmatch(value):
        raise invalid(
            f"{value!r} is not a plain SQL name (letters, digits and '_', optionally 'schema.table')"
        )
    return value


def _not_empty(value: dict[Any, Any]) -> dict[Any, Any]:
    if not value:
        raise invalid("map at least one entry")
    return value


def _url_paths(value: dict[str, str]) -> dict[str, str]:
    for path in value:
        if not path.startswith("/"):
            raise invalid(f"{path!r} is not a URL path (it must start with '/')")
    return value


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise invalid(f"not a valid regular expression: {exc}") from None
    return value


def _chat_id(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and not value.strip():
        raise invalid("is empty")
    return value


def split_listen(text: str) -> tuple[str, int]:
    """``"127.0.0.1:9108"`` -> ``("127.0.0.1", 9108)``; ``"[::1]:0"`` -> ``("::1", 0)``; else ValueError."""
    host, colon, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected host:port like '127.0.0.1:9108' (port 0-65535), got {text!r}")
    return host, int(port)


def _listen(value: str) -> str:
    try:
        split_listen(value)
    except ValueError as exc:
        raise invalid(str(exc)) from None
    return value


class Retention(ConfigModel):
    """How long stored probe results and orders are kept."""

    probes: PositiveDuration = timedelta(days=14)
    orders: PositiveDuration = timedelta(days=90)


class StorageConfig(ConfigModel):
    """The database. A relative SQLite path is resolved against the directory of ``monitor.yaml``."""

    url: Annotated[str, AfterValidator(_db_url)] = Field(
        default="sqlite:///var/paymon.db", validate_default=True, repr=False
    )
    retention: Retention = Field(default_factory=Retention)

    @field_validator("url", mode="after")
    @classmethod
    def _absolute_sqlite(cls, value: str, info: ValidationInfo) -> str:
        ctx = load_context(info)
        return value if ctx is None else absolute_sqlite_url(value, ctx.base_dir)


def absolute_sqlite_url(url: str, base_dir: Path) -> str:
    """``sqlite:///rel/x.db`` -> ``sqlite:////<base_dir>/rel/x.db``; other URLs and in-memory SQLite as is."""
    match = _SQLITE_URL.match(url)
    if match is None:
        return url
    scheme, rest = match.groups()
    path, question, query = rest.partition("?")
    if not path or path == ":memory:" or path.startswith(("/", "file:")):
        return url
    absolute = os.path.normpath(base_dir / Path(path).expanduser())
    return f"{scheme}:///{absolute}{question}{query}"


class HttpConfig(ConfigModel):
    """The read-only HTTP server (``/metrics``, ``/healthz``, ``/api/status``). Port 0 picks a free port."""

    listen: Annotated[str, AfterValidator(_listen)] = "127.0.0.1:9108"
    enabled: bool = True

    @property
    def host(self) -> str:
        """The address to bind, without IPv6 brackets."""
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        """The port to bind (0: let the OS pick one)."""
        return split_listen(self.listen)[1]


def _unique_windows(windows: tuple[str, ...]) -> tuple[str, ...]:
    if not windows:
        raise invalid("list at least one window")
    if len(set(windows)) != len(windows):
        raise invalid("each window may be listed once")
    return windows


class Defaults(ConfigModel):
    """Defaults for every channel and rule; ``windows`` are the metric windows, kept as written."""

    pay_timeout: PositiveDuration = timedelta(minutes=15)
    callback_deadline: PositiveDuration = timedelta(minutes=5)
    min_orders: Annotated[int, Field(ge=0, le=1_000_000)] = 20
    windows: Annotated[tuple[WindowText, ...], AfterValidator(_unique_windows)] = ("5m", "15m", "1h", "24h")


def _event_fields(value: dict[str, str]) -> dict[str, str]:
    for name in value:
        if name not in EVENT_FIELDS:
            raise invalid(f"unknown event field {name!r} (expected one of: {', '.join(EVENT_FIELDS)})")
    return value


class JsonlSource(ConfigModel):
    """The shop's JSONL order-event log. ``fields`` renames: our field -> the shop's field."""

    kind: Literal["jsonl"] = "jsonl"
    path: LocalPath
    timezone: TimeZoneName = "UTC"
    name: Slug | None = None
    fields: Annotated[dict[str, str], AfterValidator(_event_fields)] = Field(default_factory=dict)

    @property
    def source_id(self) -> str:
        """The checkpoint key: ``name``, else ``jsonl:<path>``."""
        return self.name or f"{self.kind}:{self.path}"

    @property
    def label(self) -> str:
        """The ``source`` metric label: ``name``, else ``jsonl:<file name>`` (no folder: labels are short)."""
        return self.name or f"{self.kind}:{self.path.name}"


class NginxSource(ConfigModel):
    """An nginx access log; requests to a ``callbacks`` URL path count as that channel's callbacks."""

    kind: Literal["nginx"] = "nginx"
    path: LocalPath
    callbacks: Annotated[dict[str, str], AfterValidator(_url_paths), AfterValidator(_not_empty)]
    pattern: Annotated[str, AfterValidator(_regex)] | None = None
    timezone: TimeZoneName = "UTC"
    name: Slug | None = None

    @property
    def source_id(self) -> str:
        """``name``, else ``nginx:<path>``."""
        return self.name or f"{self.kind}:{self.path}"

    @property
    def label(self) -> str:
        """``name``, else ``nginx:<file name>``."""
        return self.name or f"{self.kind}:{self.path.name}"


class DujiaokaSource(ConfigModel):
    """dujiaoka's database, polled every ``every``; ``channels`` maps ``pays.id`` to a channel id."""

    kind: Literal["dujiaoka"] = "dujiaoka"
    url: Annotated[SecretValue, AfterValidator(_secret_db_url)]
    channels: Annotated[dict[RowId, str], AfterValidator(_not_empty)]
    every: PositiveDuration = timedelta(seconds=30)
    name: Slug | None = None

    @property
    def source_id(self) -> str:
        """``name``, else ``dujiaoka:<database host>`` (never the user or password)."""
        return self.name or f"{self.kind}:{urlsplit(self.url.reveal()).hostname or 'localhost'}"

    @property
    def label(self) -> str:
        """The source id (it names no file)."""
        return self.source_id


Source = Annotated[JsonlSource | NginxSource | DujiaokaSource, Field(discriminator="kind")]


class Reconcile(ConfigModel):
    """Ask the channel about orders still unpaid in the shop after ``older_than``, back to ``horizon``."""

    every: PositiveDuration = timedelta(minutes=1)
    older_than: PositiveDuration = timedelta(minutes=5)
    horizon: PositiveDuration = timedelta(hours=24)
    replay_notify: bool = False
    #: At most this many questions per channel per round (newest orders first); the rest wait for the next.
    per_round: Annotated[int, Field(ge=1, le=10_000)] = 100
    #: Questions per second per channel, so reconciliation never looks like an attack on the gateway.
    rate: Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)] = 5.0


Severity = Literal["critical", "warning", "info"]


class Chat(ConfigModel):
    """A Telegram chat and the alert severities sent to it. ``id`` stays text (it may come from the env)."""

    id: Annotated[str, BeforeValidator(_chat_id)]
    severities: tuple[Severity, ...] = ("critical", "warning")


def _at_least_one_chat(chats: tuple[Chat, ...]) -> tuple[Chat, ...]:
    if not chats:
        raise invalid("list at least one chat")
    return chats


class Telegram(ConfigModel):
    """The Telegram sink; requests go to ``{api_base}/bot<token>/<method>``."""

    token: SecretValue
    chats: Annotated[tuple[Chat, ...], AfterValidator(_at_least_one_chat)]
    admins: tuple[Annotated[int, Field(ge=1, le=MAX_TELEGRAM_ID)], ...] = ()
    api_base: Annotated[HttpUrl, AfterValidator(lambda url: url.rstrip("/"))] = "https://api.telegram.org"


class Notify(ConfigModel):
    """Where alerts go. Without ``telegram`` the console is the only sink."""

    language: Literal["zh", "en"] = "zh"
    console: bool = True
    #: Notifications about one channel queued within this long of the first become one message (0 = none).
    group_wait: Duration = timedelta(0)
    telegram: Telegram | None = None


class Display(ConfigModel):
    """How times are shown to people: the status table, the lost-order list and every alert text use one zone,
    written out with its offset. Stored times stay UTC."""

    timezone: TimeZoneName = DEFAULT_ZONE


def _increasing_steps(steps: tuple[float, ...]) -> tuple[float, ...]:
    if not steps:
        raise invalid("list at least one step")
    if any(not 0 < step <= 1 for step in steps):
        raise invalid("each step is a fraction of the original weight: 0 < step <= 1")
    if any(later <= earlier for earlier, later in zip(steps, steps[1:], strict=False)):
        raise invalid("steps must increase")
    if steps[-1] != 1.0:
        raise invalid("the last step must be 1.0 (the original weight)")
    return steps


class Restore(ConfigModel):
    """Give a recovered channel its weight back in ``steps``, one every ``every`` while it stays healthy."""

    steps: Annotated[tuple[float, ...], AfterValidator(_increasing_steps)] = (0.25, 0.5, 1.0)
    every: PositiveDuration = timedelta(minutes=5)
    healthy_for: PositiveDuration = timedelta(minutes=10)


class Explore(ConfigModel):
    """Restore a channel paymon drained through a trickle of real orders first: the restore's first step is
    ``share`` of the baseline, and a ``success_ratio`` rule still firing on the channel is judged only on the
    orders created since the trickle began, once ``min_orders`` of them are settled."""

    share: Annotated[float, Field(gt=0, lt=1)] = 0.02
    min_orders: Annotated[int, Field(ge=1, le=100_000)] = 20


def _channels_file_default(cls: type, value: Any, info: ValidationInfo) -> Any:
    """A missing path means the channels file being loaded (``channels.yaml`` beside monitor.yaml)."""
    if value is not None:
        return value
    ctx = load_context(info)
    return ctx.channels_path if ctx is not None else Path("channels.yaml")


class YamlSink(ConfigModel):
    """Write weights into a channels.yaml file (round-trip, atomic); default: the loaded channels file.
    ``seed``: when ``path`` does not exist yet, it is created as a copy of this file (a shipped example)."""

    kind: Literal["yaml"] = "yaml"
    path: LocalPath = Field(default=None, validate_default=True)
    seed: LocalPath | None = None

    _default_is_channels_file = field_validator("path", mode="before")(_channels_file_default)


def _single_update(value: str) -> str:
    """A statement sink's SQL: one UPDATE with exactly the parameters ``:channel`` and ``:weight``."""
    from monitor.routing.statement import statement_problem  # the sink owns the rule; imported late (no cycle)

    problem = statement_problem(value)
    if problem:
        raise invalid(problem)
    return value


class SqlSink(ConfigModel):
    """Weights into the shop's own database. ``flavour: dujiaoka`` opens and closes dujiaoka's gateways
    (``pays.is_open``; ``channels``: ``pays.id`` -> channel id); ``statement:`` runs one configured UPDATE with
    ``:channel`` and ``:weight`` per change, for other shops."""

    kind: Literal["sql"] = "sql"
    url: Annotated[SecretValue, AfterValidator(_secret_db_url)]
    flavour: Literal["dujiaoka"] | None = None
    statement: Annotated[str, AfterValidator(_single_update)] | None = None
    table: Annotated[str, AfterValidator(_identifier)] = "pays"
    key_column: Annotated[str, AfterValidator(_identifier)] = "id"
    open_column: Annotated[str, AfterValidator(_identifier)] = "is_open"
    weight_column: Annotated[str, AfterValidator(_identifier)] | None = None
    channels: dict[RowId, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _flavour_or_statement(self) -> SqlSink:
        if self.statement is not None:
            if self.flavour is not None:
                raise invalid("give either flavour or statement, not both", at="statement")
            return self
        if self.flavour is None:
            raise invalid("give flavour: dujiaoka (its pays.is_open) or statement: an UPDATE for other shops",
                          at="flavour")
        if not self.channels:
            raise invalid("map at least one pays.id to a channel id", at="channels")
        return self


class WebhookSink(ConfigModel):
    """POST every weight change as JSON to ``url``, signed with HMAC-SHA256 under ``secret``. ``name`` tells
    several webhooks apart: each has its own queue, delivered in order."""

    kind: Literal["webhook"] = "webhook"
    url: HttpUrl = Field(repr=False)
    secret: SecretValue
    timeout: PositiveDuration = timedelta(seconds=5)
    #: Short: the outbox names the queue ``webhook:<name>`` in a 32-character column.
    name: Annotated[Slug, Field(max_length=24)] = "main"


RoutingSink = Annotated[YamlSink | SqlSink | WebhookSink, Field(discriminator="kind")]


def _prior(prior: tuple[float, float]) -> tuple[float, float]:
    if any(not 0 < x <= 10_000 for x in prior):
        raise invalid("prior is [successes, failures] pseudo-counts, each > 0 (and at most 10000)")
    return prior


class Smart(ConfigModel):
    """``mode: smart``: among healthy channels of a payment method, weights proportional to each channel's
    Beta-posterior success ratio over ``window`` × (1 − fee_rate), each at least ``floor`` of the group, changed at
    most every ``every`` and only when a share moves by more than ``dead_band``. ``shadow``: plan and log the
    smart weights, write nothing (like ``suggest``)."""

    every: PositiveDuration = timedelta(minutes=15)
    floor: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = 0.05
    dead_band: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = 0.05
    prior: Annotated[tuple[float, float], AfterValidator(_prior)] = (19.0, 1.0)
    window: WindowText = "1h"
    shadow: bool = False


class Routing(ConfigModel):
    """How routing weights are changed: ``auto`` writes, ``suggest`` only proposes, ``off`` does nothing;
    ``smart`` is ``auto`` plus success- and fee-weighted shares among healthy channels (``smart:``)."""

    mode: Literal["auto", "suggest", "off", "smart"] = "auto"
    sink: RoutingSink = Field(default_factory=lambda: {"kind": "yaml"}, validate_default=True)
    #: Several sinks, each written every change (e.g. YAML for the weights and the shop's on/off switch in SQL);
    #: given instead of ``sink``.
    sinks: tuple[RoutingSink, ...] = ()
    min_active_per_method: Annotated[int, Field(ge=1, le=1000)] = 1
    max_changes_per_hour: Annotated[int, Field(ge=0, le=3600)] = 6
    restore: Restore = Field(default_factory=Restore)
    #: Unset: a drained channel's success_ratio alerts are judged by its probes (see ``Explore`` for the other way).
    explore: Explore | None = None
    smart: Smart = Field(default_factory=Smart)

    @property
    def writes(self) -> bool:
        """Whether decisions are written to the sinks (``auto``, ``smart`` unless ``smart.shadow``)."""
        return self.mode == "auto" or (self.mode == "smart" and not self.smart.shadow)

    @model_validator(mode="before")
    @classmethod
    def _sink_or_sinks(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("sinks") and "sink" in data:
            raise ValueError("give either sink or sinks, not both")
        return data

    @model_validator(mode="after")
    def _webhook_names(self) -> Routing:
        names = [s.name for s in self.all_sinks if isinstance(s, WebhookSink)]
        if len(set(names)) != len(names):
            raise ValueError("each webhook sink needs its own name (name: ...), they queue separately")
        return self

    @property
    def all_sinks(self) -> tuple[YamlSink | SqlSink | WebhookSink, ...]:
        """Every sink a weight change goes to, in order (``sinks``, else the one ``sink``)."""
        return self.sinks or (self.sink,)


class MonitorConfig(ConfigModel):
    """The whole of ``monitor.yaml``; ``channels`` is the channels file (default: channels.yaml beside it)."""

    storage: StorageConfig = _section()
    http: HttpConfig = Field(default_factory=HttpConfig)
    defaults: Defaults = Field(default_factory=Defaults)
    sources: tuple[Source, ...] = ()
    reconcile: Reconcile = Field(default_factory=Reconcile)
    rules: tuple[Rule, ...] = ()
    notify: Notify = Field(default_factory=Notify)
    display: Display = Field(default_factory=Display)
    routing: Routing = _section()
    channels: LocalPath = Field(default=None, validate_default=True)

    _default_channels_file = field_validator("channels", mode="before")(_channels_file_default)
