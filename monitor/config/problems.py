"""Turn pydantic's validation errors into one-line problems an operator can act on.

A pydantic error has a ``loc`` (field names, list indices, union tags) and a terse message. Here the
``loc`` is walked through the plain document to find the key or item it is about (and so its line), the
config models are walked in parallel to know which keys were allowed and whether the field holds a secret,
and the message is rewritten in plain words. Values of secret fields are never quoted.
"""

from __future__ import annotations

import difflib
import re
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from monitor.config.document import DocPath, Document, Problem
from monitor.secret import Secret

__all__ = ["translate"]

_INTERNAL_LOC = re.compile(r"^[a-z][a-z-]*\[.*\]$")
_KEY_LOC = "[key]"
_ABSENT = object()

_TYPE_MESSAGES: dict[str, str] = {
    "string_type": "expected a string",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "finite_number": "expected a finite number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "decimal_type": "expected a decimal number like '0.01'",
    "decimal_parsing": "expected a decimal number like '0.01'",
    "dict_type": "expected a mapping (key: value)",
    "mapping_type": "expected a mapping (key: value)",
    "model_type": "expected a mapping (key: value)",
    "model_attributes_type": "expected a mapping (key: value)",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "iterable_type": "expected a list",
    "path_type": "expected a file path",
    "timedelta_type": "expected a duration like '30s'",
}
_BOUNDS: dict[str, str] = {
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
}


def translate(error: ErrorDetails, doc: Document, root: type[BaseModel]) -> Problem | None:
    """The problem ``error`` describes in ``doc``, or None when it only repeats one already reported."""
    loc: list[str | int] = list(error["loc"])
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    if error["type"] == "paymon_config" and ctx.get("at"):
        loc.append(str(ctx["at"]))
    path, about_key = _resolve(loc, doc.data)
    if doc.is_failed(path):
        return None
    models = _ModelWalk(root, loc)
    if error["type"] == "extra_forbidden":
        return doc.problem(path, _unknown_key(path[-1], models.allowed_keys(len(loc) - 1)))
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return _kind_problem(error, doc, path, models.kinds())
    message = _message(error, ctx, quote_input=not models.holds_secret)
    return doc.problem(path, f"invalid key: {message}" if about_key else message)


def _resolve(loc: list[str | int], data: Any) -> tuple[DocPath, bool]:
    """Follow ``loc`` through the document: skip union tags and pydantic's internal steps.

    Returns the path (which may end in keys the file does not have, e.g. a missing field) and whether the
    error is about a mapping key rather than its value.
    """
    node = data
    path: list[str | int] = []
    about_key = False
    for elem in loc:
        if node is not _ABSENT:
            if isinstance(node, dict) and node.get("kind") == elem:
                continue
            if isinstance(node, dict) and elem in node:
                path.append(elem)
                node = node[elem]
                continue
            if isinstance(node, list) and isinstance(elem, int) and 0 <= elem < len(node):
                path.append(elem)
                node = node[elem]
                continue
        if elem == _KEY_LOC:
            about_key = True
            continue
        if isinstance(elem, str) and _INTERNAL_LOC.match(elem):
            continue
        path.append(elem)
        node = _ABSENT
    return tuple(path), about_key


class _ModelWalk:
    """The config-model types along a ``loc``: which keys a mapping allows, whether a value is a secret."""

    def __init__(self, root: type[BaseModel], loc: list[str | int]) -> None:
        self.steps: list[list[Any]] = [[root]]
        for elem in loc:
            current = self.steps[-1]
            following = [nxt for tp in current for nxt in _step(tp, elem)]
            self.steps.append(following or current)
        self.holds_secret = any(_holds_secret(tp) for step in self.steps for tp in step)

    def allowed_keys(self, depth: int) -> list[str]:
        keys: list[str] = []
        for tp in self.steps[depth]:
            for model in _models(tp):
                keys.extend(field.alias or name for name, field in model.model_fields.items())
        return list(dict.fromkeys(keys))

    def kinds(self) -> list[str]:
        return [
            kind for tp in self.steps[-1] for model in _models(tp) if (kind := _kind_of(model)) is not None
        ]


def _members(tp: Any) -> list[Any]:
    """The concrete types inside ``Annotated`` / ``X | Y`` / ``Optional``."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _members(get_args(tp)[0])
    if origin is Union or origin is types.UnionType:
        return [member for arg in get_args(tp) for member in _members(arg)]
    if tp is type(None):
        return []
    return [tp]


def _models(tp: Any) -> list[type[BaseModel]]:
    return [m for m in _members(tp) if isinstance(m, type) and issubclass(m, BaseModel)]


def _kind_of(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("kind")
    return field.default if field is not None and isinstance(field.default, str) else None


def _step(tp: Any, elem: str | int) -> list[Any]:
    """Types reached from ``tp`` by one ``loc`` element."""
    found: list[Any] = []
    for member in _members(tp):
        if isinstance(member, type) and issubclass(member, BaseModel):
            for name, field in member.model_fields.items():
                if elem in (name, field.alias):
                    found.append(field.annotation)
            if _kind_of(member) == elem:
                found.append(member)
            continue
        origin, args = get_origin(member), get_args(member)
        if origin in (tuple, list) and args and isinstance(elem, int):
            found.append(args[0])
        elif origin is dict and len(args) == 2:
            found.append(args[0] if elem == _KEY_LOC else args[1])
    return found


def _holds_secret(tp: Any) -> bool:
    if tp is Secret:
        return True
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return False
    return any(_holds_secret(arg) for arg in get_args(tp))


def _unknown_key(key: str | int, allowed: list[str]) -> str:
    message = f"unknown key {str(key)!r}"
    if allowed:
        message += f" (expected one of: {', '.join(allowed)})"
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        if close:
            message += f"; did you mean {close[0]!r}?"
    return message


def _kind_problem(error: ErrorDetails, doc: Document, path: DocPath, kinds: list[str]) -> Problem:
    expected = f" (expected one of: {', '.join(kinds)})" if kinds else ""
    node = _node(doc.data, path)
    if error["type"] == "union_tag_not_found" or not isinstance(node, dict):
        return doc.problem((*path, "kind"), f"required key is missing{expected}")
    return doc.problem((*path, "kind"), f"unknown kind {_show(node.get('kind'))}{expected}")


def _node(data: Any, path: DocPath) -> Any:
    node = data
    for elem in path:
        if isinstance(node, dict) and elem in node:
            node = node[elem]
        elif isinstance(node, list) and isinstance(elem, int) and 0 <= elem < len(node):
            node = node[elem]
        else:
            return None
    return node


def _message(error: ErrorDetails, ctx: dict[str, Any], *, quote_input: bool) -> str:
    kind = error["type"]
    got = f", got {_show(error['input'])}" if quote_input else ""
    if kind == "missing":
        return "required key is missing"
    if kind in _TYPE_MESSAGES:
        return _TYPE_MESSAGES[kind] + got
    if kind in _BOUNDS:
        return _BOUNDS[kind].format(**{k: _number(v) for k, v in ctx.items()}) + got
    if kind == "literal_error":
        return f"expected one of: {_unquote_choices(str(ctx.get('expected', '')))}{got}"
    if kind in ("paymon_config", "value_error", "assertion_error"):
        return _strip_prefix(error["msg"])
    return _lower_first(_strip_prefix(error["msg"])) + got


def _strip_prefix(message: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def _lower_first(message: str) -> str:
    return message[:1].lower() + message[1:]


def _unquote_choices(expected: str) -> str:
    """pydantic's ``'a', 'b' or 'c'`` -> ``a, b, c``."""
    return ", ".join(choice.strip().strip("'") for choice in re.split(r",| or ", expected) if choice.strip())


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _show(value: Any) -> str:
    """A short description of a (non-secret) input value for "got ..." clauses."""
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else repr(value[:57] + "...")
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(str(value))
