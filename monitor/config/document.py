"""One config file read into plain Python values, with the line of every key and list item.

The files are parsed with ruamel.yaml's round-trip loader because it remembers where each node came from;
the values are then copied into plain ``dict``/``list``/scalars (with ``${VAR}`` expanded per string) for
pydantic, while ``lines`` keeps, for every path of keys and indices, the 1-based line to quote in an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.scalarbool import ScalarBoolean

from monitor.config.expand import expand_env

__all__ = ["Document", "DocPath", "Problem", "read_document"]

#: A position in a document: mapping keys and list indices from the root.
DocPath = tuple[str | int, ...]

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
_DUPLICATE_KEY = re.compile(r'found duplicate key "(.*?)" with value')
#: Settings whose value may come from the environment yet is no secret: it is not masked in messages and logs
#: (the startup line shows the address the server listens on).
_PUBLIC: frozenset[DocPath] = frozenset({("http", "listen")})


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a config file, printed as ``file:line field.path: message``."""

    file: str
    line: int | None
    where: str
    message: str

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.file}: {self.message}"
        place = f"{self.file}:{self.line}"
        return f"{place} {self.where}: {self.message}" if self.where else f"{place} {self.message}"


@dataclass
class Document:
    """A parsed file: ``data`` to validate, ``lines`` for messages, ``failed``: paths with unusable values."""

    path: Path
    shown: str
    data: Any = None
    lines: dict[DocPath, int] = field(default_factory=dict)
    from_env: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    failed: set[DocPath] = field(default_factory=set)
    parsed: bool = False

    def line_of(self, path: DocPath) -> int:
        """The line of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return 1

    def describe(self, path: DocPath) -> str:
        """``channels[epay-main].probes.query.every``: top-level list items are named by id or name."""
        parts: list[str] = []
        node: Any = self.data
        for depth, elem in enumerate(path):
            if isinstance(elem, int) and isinstance(node, list):
                item = node[elem] if 0 <= elem < len(node) else None
                label = _label(item) if depth == 1 else None
                parts.append(f"[{label if label is not None else elem}]")
                node = item
            else:
                parts.append(_key_text(elem, first=not parts))
                node = node.get(elem) if isinstance(node, dict) else None
        return "".join(parts)

    def problem(self, path: DocPath, message: str) -> Problem:
        """A problem at ``path``; a path that is not in the file (a missing key) gets its parent's line."""
        return Problem(self.shown, self.line_of(path), self.describe(path), message)

    def is_failed(self, path: DocPath) -> bool:
        """True when ``path`` lies inside a value that could not be expanded (already reported)."""
        return any(path[: len(bad)] == bad for bad in self.failed)


def read_document(path: Path, shown: str, env: Mapping[str, str]) -> Document:
    """Read and parse ``path``; syntax and expansion problems land in ``Document.problems``, never raise."""
    doc = Document(path, shown)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        doc.problems.append(Problem(shown, None, "", "no such file"))
        return doc
    except IsADirectoryError:
        doc.problems.append(Problem(shown, None, "", "is a directory, not a file"))
        return doc
    except UnicodeDecodeError:
        doc.problems.append(Problem(shown, None, "", "is not UTF-8 text"))
        return doc
    except OSError as exc:
        doc.problems.append(Problem(shown, None, "", f"cannot be read: {exc.strerror}"))
        return doc
    try:
        tree = YAML(typ="rt").load(text)
    except YAMLError as exc:
        doc.problems.append(_syntax_problem(shown, exc))
        return doc
    doc.lines[()] = _node_line(tree)
    converter = _Converter(doc, env)
    doc.data = converter.plain(tree, ())
    doc.parsed = True
    # Described only now: list items are named by their id, which may come later in the item than the error.
    doc.problems.extend(doc.problem(path, message) for path, message in converter.errors)
    return doc


def _syntax_problem(shown: str, exc: YAMLError) -> Problem:
    """Name the line of a YAML error; never quote values (a duplicate key's value may be a secret)."""
    if not isinstance(exc, MarkedYAMLError):
        return Problem(shown, None, "", f"YAML syntax error: {exc}")
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    problem = str(exc.problem or "invalid YAML")
    duplicate = _DUPLICATE_KEY.match(problem)
    if duplicate is not None:
        return Problem(shown, line, "", f"duplicate key '{duplicate.group(1)}'")
    message = f"YAML syntax error: {problem}"
    if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
        message += f" ({exc.context} that starts on line {exc.context_mark.line + 1})"
    return Problem(shown, line, "", message)


class _Converter:
    """Copies a ruamel tree into plain values, expanding ``${VAR}`` in strings and recording lines."""

    def __init__(self, doc: Document, env: Mapping[str, str]) -> None:
        self.doc = doc
        self.env = env
        self.errors: list[tuple[DocPath, str]] = []

    def plain(self, node: Any, path: DocPath) -> Any:
        if isinstance(node, dict):
            return self._mapping(node, path)
        if isinstance(node, list):
            return self._sequence(node, path)
        if isinstance(node, str):
            return self._string(str(node), path)
        return _scalar(node)

    def _mapping(self, node: Any, path: DocPath) -> dict[str | int, Any]:
        result: dict[str | int, Any] = {}
        for raw_key, value in node.items():
            key = _key(raw_key)
            sub = (*path, key)
            self.doc.lines[sub] = _position(node, "key", raw_key, self.doc.line_of(path))
            result[key] = self.plain(value, sub)
        return result

    def _sequence(self, node: Any, path: DocPath) -> list[Any]:
        result: list[Any] = []
        for index, value in enumerate(node):
            sub = (*path, index)
            self.doc.lines[sub] = _position(node, "item", index, self.doc.line_of(path))
            result.append(self.plain(value, sub))
        return result

    def _string(self, text: str, path: DocPath) -> str:
        expansion = expand_env(text, self.env)
        if path not in _PUBLIC:
            self.doc.from_env.extend(expansion.from_env)
        self.errors.extend((path, message) for message in expansion.errors)
        if expansion.errors:
            self.doc.failed.add(path)
        return expansion.text


def _key(raw: Any) -> str | int:
    """Mapping keys stay ``str`` or ``int`` (``{15: epay-main}``); anything else becomes its YAML text."""
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, int):
        return int(raw)
    if raw is None:
        return "null"
    return str(raw)


def _scalar(node: Any) -> Any:
    """Strip ruamel's scalar subclasses (ScalarFloat, ScalarInt, ScalarBoolean) down to builtins."""
    if isinstance(node, bool | ScalarBoolean):
        return bool(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


def _position(node: Any, kind: str, at: Any, fallback: int) -> int:
    """1-based line of a mapping key or list item; merged (``<<:``) keys fall back to the parent's line."""
    try:
        lc = node.lc
        line, _col = lc.key(at) if kind == "key" else lc.item(at)
        return int(line) + 1
    except (AttributeError, KeyError, IndexError, TypeError):
        return fallback


def _node_line(node: Any) -> int:
    try:
        return int(node.lc.line) + 1
    except (AttributeError, TypeError):
        return 1


def _key_text(key: str | int, *, first: bool) -> str:
    if isinstance(key, str) and _PLAIN_KEY.fullmatch(key):
        return key if first else f".{key}"
    return f"[{key!r}]"


def _label(item: Any) -> str | None:
    """The ``id`` (channels) or ``name`` (rules, sources) that names a list item in messages."""
    if not isinstance(item, dict):
        return None
    for key in ("id", "name"):
        value = item.get(key)
        if isinstance(value, str) and _LABEL.fullmatch(value):
            return value
    return None
