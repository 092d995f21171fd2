"""``${NAME}`` expansion of config strings from the environment.

Secrets never sit in the YAML files: a value like ``${EPAY_MAIN_KEY}`` is replaced by that environment
variable. ``${NAME:-default}`` falls back to ``default`` when the variable is unset or empty (as in a POSIX
shell), ``$$`` is a literal ``$``, and a ``$`` followed by anything else is kept as it is. Expansion works on
one string at a time and reports what went wrong instead of raising, so the loader can name the field of every
missing variable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Expansion", "expand_env"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Expansion:
    """The expanded text, the values that came from the environment, and one message per failed reference."""

    text: str
    from_env: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()


def expand_env(text: str, env: Mapping[str, str]) -> Expansion:
    """Expand every ``${NAME}`` / ``${NAME:-default}`` in ``text`` and turn ``$$`` into ``$``."""
    if "$" not in text:
        return Expansion(text)
    out: list[str] = []
    from_env: list[str] = []
    errors: list[str] = []
    pos = 0
    while pos < len(text):
        dollar = text.find("$", pos)
        if dollar < 0:
            out.append(text[pos:])
            break
        out.append(text[pos:dollar])
        follower = text[dollar + 1 : dollar + 2]
        if follower == "$":
            out.append("$")
            pos = dollar + 2
        elif follower != "{":
            out.append("$")
            pos = dollar + 1
        else:
            close = text.find("}", dollar + 2)
            if close < 0:
                errors.append("unterminated '${' (write '$$' for a literal '$')")
                break
            out.append(_reference(text[dollar + 2 : close], env, from_env, errors))
            pos = close + 1
    return Expansion("".join(out), tuple(from_env), tuple(errors))


def _reference(body: str, env: Mapping[str, str], from_env: list[str], errors: list[str]) -> str:
    """Resolve the inside of one ``${...}``; record the environment value or the problem."""
    name, has_default, default = body.partition(":-")
    if not _NAME.fullmatch(name):
        errors.append(
            "invalid '${...}' reference: a variable name is letters, digits and '_' "
            "(write '$$' for a literal '$')"
        )
        return ""
    value = env.get(name)
    if has_default:
        if value:
            from_env.append(value)
            return value
        return default
    if value is None:
        errors.append(f"environment variable {name} is not set")
        return ""
    from_env.append(value)
    return value
