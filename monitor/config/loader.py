"""``load_config``: read both files, validate them, and report every problem at once.

Nothing is half-loaded: either both files are valid and a :class:`LoadedConfig` comes back, or a
:class:`~monitor.errors.ConfigError` lists every problem of both files, one ``file:line field: message``
per line, with every known secret value scrubbed from the text.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from monitor.config.channels import ChannelConfig, ChannelsFile
from monitor.config.checks import cross_check
from monitor.config.document import Document, Problem, read_document
from monitor.config.fields import LoadContext
from monitor.config.problems import translate
from monitor.config.settings import MonitorConfig
from monitor.errors import ConfigError
from monitor.secret import Redactor

__all__ = ["LoadedConfig", "load_config", "load_model"]

_Model = TypeVar("_Model", bound=BaseModel)


@dataclass(frozen=True, repr=False)
class LoadedConfig:
    """Both config files, validated. ``redactor`` knows every secret value found in them."""

    monitor: MonitorConfig
    channels: tuple[ChannelConfig, ...]
    monitor_path: Path
    channels_path: Path
    redactor: Redactor

    def channel(self, id: str) -> ChannelConfig:
        """The channel with this id; ``KeyError`` when channels.yaml has none."""
        for channel in self.channels:
            if channel.id == id:
                return channel
        raise KeyError(id)

    def __repr__(self) -> str:
        text = (
            f"LoadedConfig(monitor={self.monitor!r}, channels={self.channels!r}, "
            f"monitor_path={self.monitor_path!r}, channels_path={self.channels_path!r})"
        )
        return self.redactor(text)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> LoadedConfig:
    """Load ``monitor.yaml`` at ``path`` and the channels file it names; ``env`` defaults to ``os.environ``.

    Raises :class:`ConfigError` listing every problem of both files.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    given = Path(path).expanduser()
    monitor_path = Path(os.path.abspath(given))
    show = _Shower(absolute=given.is_absolute())
    monitor_doc = read_document(monitor_path, str(path), environ)
    if not monitor_path.exists():
        raise ConfigError([f"{path}: no such file"])
    channels_path, explicit = _channels_path(monitor_doc, monitor_path.parent)
    channels_doc = read_document(channels_path, show(channels_path), environ)
    if explicit and not channels_path.exists():
        channels_doc.problems = [monitor_doc.problem(("channels",), f"no such file: {show(channels_path)}")]

    monitor_ctx = LoadContext(base_dir=monitor_path.parent, channels_path=channels_path)
    channels_ctx = LoadContext(base_dir=channels_path.parent, channels_path=channels_path)
    monitor = _validate(MonitorConfig, monitor_doc, _monitor_data(monitor_doc), monitor_ctx)
    channels = _validate(ChannelsFile, channels_doc, _channels_data(channels_doc), channels_ctx)
    checks = cross_check(monitor_doc, channels_doc, monitor)

    redactor = Redactor(
        [*monitor_doc.from_env, *channels_doc.from_env, *monitor_ctx.secrets, *channels_ctx.secrets]
    )
    problems = _ordered([*monitor_doc.problems, *channels_doc.problems, *checks], monitor_doc.shown)
    if problems or monitor is None or channels is None:
        raise ConfigError([redactor(str(problem)) for problem in problems] or [f"{path}: invalid"])
    return LoadedConfig(monitor, channels.channels, monitor_path, channels_path, redactor)


def load_model(path: str | Path, model: type[_Model], env: Mapping[str, str] | None = None) -> _Model:
    """Load one YAML file into ``model`` with the same rules and messages as the config files
    (``${VAR}`` expansion, unknown keys rejected, ``file:line field: message`` problems, paths relative to the
    file). Used for files other than the two config files, such as simulator scenarios."""
    environ: Mapping[str, str] = os.environ if env is None else env
    given = Path(path).expanduser()
    absolute = Path(os.path.abspath(given))
    if not absolute.exists():
        raise ConfigError([f"{path}: no such file"])
    doc = read_document(absolute, str(path), environ)
    ctx = LoadContext(base_dir=absolute.parent, channels_path=absolute.parent / "channels.yaml")
    result = _validate(model, doc, {} if doc.parsed and doc.data is None else doc.data, ctx)
    redactor = Redactor([*doc.from_env, *ctx.secrets])
    if doc.problems or result is None:
        raise ConfigError([redactor(str(problem)) for problem in doc.problems] or [f"{path}: invalid"])
    return result


class _Shower:
    """Names files in messages the way the operator named monitor.yaml: relative to the cwd, or absolute."""

    def __init__(self, *, absolute: bool) -> None:
        self.absolute = absolute

    def __call__(self, path: Path) -> str:
        if self.absolute:
            return str(path)
        try:
            return os.path.relpath(path)
        except ValueError:
            return str(path)


def _channels_path(monitor: Document, base_dir: Path) -> tuple[Path, bool]:
    """Where channels.yaml is, and whether monitor.yaml said so explicitly (``channels: PATH``)."""
    data = monitor.data if isinstance(monitor.data, dict) else {}
    named = data.get("channels")
    if isinstance(named, str) and named.strip() and not monitor.is_failed(("channels",)):
        target = Path(named).expanduser()
        return Path(os.path.normpath(base_dir / target)), True
    return base_dir / "channels.yaml", False


def _monitor_data(doc: Document) -> Any:
    """monitor.yaml as validated: an empty file or an empty section (``routing:``) means all defaults."""
    if doc.data is None:
        return {}
    if isinstance(doc.data, dict):
        return {key: value for key, value in doc.data.items() if value is not None}
    return doc.data


def _channels_data(doc: Document) -> Any:
    if doc.parsed and doc.data is None:
        doc.problems.append(doc.problem((), "the file is empty; it needs a 'channels:' list"))
    return doc.data


def _validate(model: type[_Model], doc: Document, data: Any, ctx: LoadContext) -> _Model | None:
    """Validate one document; every error becomes a problem of ``doc``."""
    if not doc.parsed or data is None:
        return None
    if not isinstance(data, dict):
        doc.problems.append(doc.problem((), "expected a mapping of keys at the top level"))
        return None
    try:
        return model.model_validate(data, context={"paymon": ctx})
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            problem = translate(error, doc, model)
            if problem is not None:
                doc.problems.append(problem)
        return None


def _ordered(problems: list[Problem], monitor_file: str) -> list[Problem]:
    """monitor.yaml first, then by line; exact repeats once."""
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.file != monitor_file, p.file, p.line or 0))
