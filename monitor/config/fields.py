"""Field types shared by both config files: durations, secrets, local paths, time zones, slugs, URLs.

Each is an ``Annotated`` type whose validator explains a bad value in words an operator understands.
Validators that depend on where the file lives (relative paths, the default routing sink) read a
:class:`LoadContext` passed as pydantic's validation ``context``; without one (a model built in code)
relative paths stay relative.
"""

from __future__ import annotations

import os.path
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, PlainValidator, ValidationInfo
from pydantic_core import PydanticCustomError

from monitor.config.durations import parse_duration
from monitor.config.zones import check_zone
from monitor.secret import Secret

__all__ = [
    "MAX_DURATION",
    "ConfigModel",
    "Duration",
    "HttpUrl",
    "LoadContext",
    "LocalPath",
    "PositiveDuration",
    "SecretValue",
    "Slug",
    "TimeZoneName",
    "WindowText",
    "invalid",
    "load_context",
    "resolve_path",
]

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class ConfigModel(BaseModel):
    """Base of every config model: unknown keys are errors and a loaded config never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class LoadContext:
    """What validators need to know about the file being loaded; also collects every secret value seen."""

    base_dir: Path
    channels_path: Path
    secrets: list[str] = field(default_factory=list)


def load_context(info: ValidationInfo) -> LoadContext | None:
    """The :class:`LoadContext` of this validation run, if the loader passed one."""
    context: Any = info.context
    if isinstance(context, dict):
        found = context.get("paymon")
        if isinstance(found, LoadContext):
            return found
    return None


def invalid(message: str, *, at: str | None = None) -> PydanticCustomError:
    """A validation error with a finished, human message; ``at`` names the key it is about."""
    return PydanticCustomError("paymon_config", message, {"at": at} if at else None)


def resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Make a relative path absolute against the directory of the file that names it."""
    value = value.expanduser()
    ctx = load_context(info)
    if value.is_absolute() or ctx is None:
        return value
    return Path(os.path.normpath(ctx.base_dir / value))


#: The longest duration a config may give (a retention, a window, an interval): longer ones are typos, and
#: adding one to a date could leave the calendar.
MAX_DURATION = timedelta(days=366)


def _duration(value: Any) -> Any:
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise invalid("durations cannot be negative")
        parsed = value
    else:
        try:
            parsed = parse_duration(value)
        except ValueError as exc:
            raise invalid(str(exc)) from None
    if parsed > MAX_DURATION:
        raise invalid(f"{_as_text(value)} is too long: at most 366d")
    return parsed


def _as_text(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise invalid("must be longer than 0s")
    return value


def _secret(value: Any, info: ValidationInfo) -> Secret:
    """Wrap a credential. Never quote the value in an error: it is a secret even when it is wrong."""
    if isinstance(value, Secret):
        text = value.reveal()
    elif isinstance(value, str):
        text = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        text = str(value)
    else:
        raise invalid("expected a string (value not shown: this field holds a secret)")
    if not text:
        raise invalid("is empty (secrets come from the environment, e.g. '${EPAY_MAIN_KEY}')")
    ctx = load_context(info)
    if ctx is not None:
        ctx.secrets.append(text)
    return value if isinstance(value, Secret) else Secret(text)


def _local_path(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise invalid("expected a file path, got an empty string")
    return value


def _timezone(value: str) -> str:
    try:
        return check_zone(value)
    except ValueError as exc:
        raise invalid(str(exc)) from None


def _slug(value: str) -> str:
    if not SLUG.fullmatch(value):
        raise invalid(
            f"{value!r} is not a valid name: use lowercase letters, digits, '-' and '_', "
            "starting with a letter or digit, at most 64 characters"
        )
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid("expected an http:// or https:// URL")
    return value


def _window(value: str) -> str:
    try:
        length = parse_duration(value)
    except ValueError as exc:
        raise invalid(str(exc)) from None
    if length <= timedelta(0):
        raise invalid("a window must be longer than 0s")
    if length > MAX_DURATION:
        raise invalid(f"{value!r} is too long: at most 366d")
    return value


#: ``30s``, ``5m``, ``1h30m`` or a number of seconds; zero allowed.
Duration = Annotated[timedelta, BeforeValidator(_duration)]
#: Like :data:`Duration` but strictly positive (intervals, timeouts).
PositiveDuration = Annotated[timedelta, BeforeValidator(_duration), AfterValidator(_positive)]
#: A credential: masked in every ``str``/``repr``, registered with the redactor when loaded.
SecretValue = Annotated[Secret, PlainValidator(_secret)]
#: A file path; relative ones are resolved against the directory of the config file.
LocalPath = Annotated[Path, BeforeValidator(_local_path), AfterValidator(resolve_path)]
#: An IANA time-zone name that :class:`zoneinfo.ZoneInfo` knows.
TimeZoneName = Annotated[str, AfterValidator(_timezone)]
#: ``^[a-z0-9][a-z0-9_-]{0,63}$``: channel ids and rule names (metric label values).
Slug = Annotated[str, AfterValidator(_slug)]
#: An absolute http(s) URL.
HttpUrl = Annotated[str, AfterValidator(_http_url)]
#: A window as written (``15m``): kept as text because it is a metric label value, but it must parse.
WindowText = Annotated[str, AfterValidator(_window)]
