"""PHP behaviour the simulated epay servers copy: ``json_encode`` escaping, ``$_POST`` parsing, loose empties,
``intval``, the escaping epay applies before storing a value, ``mb_strcut``, PDO ``FETCH_BOTH`` rows.

epay is PHP, and a client that talks to it meets these PHP-isms on the wire (observed on real
servers). The simulated gateways (``epay.py``, ``epay_v2.py``) share them from here so both flavours and both API
versions produce the same bytes a real server would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

__all__ = [
    "HTML",
    "JSON",
    "cut_bytes",
    "fetch_both",
    "intval",
    "parse_money",
    "php_empty",
    "php_escape",
    "php_json",
    "post_params",
    "text",
]

#: PHP's default content type, and what ``@header('Content-Type: application/json; ...')`` sends.
HTML = "text/html; charset=UTF-8"
JSON = "application/json; charset=UTF-8"

_MONEY = re.compile(r"^[0-9.]+$")
_MAX_MONEY = Decimal("99999999.99")  # decimal(10,2)
_CENT = Decimal("0.01")


def php_json(value: object, *, unescaped_unicode: bool = False) -> str:
    """``json_encode`` with PHP's default flags: ``\\uXXXX`` for non-ASCII and ``\\/`` for ``/``.

    ``unescaped_unicode`` adds ``JSON_UNESCAPED_UNICODE`` (raw UTF-8; ``/`` is still escaped).
    """
    encoded = json.dumps(value, ensure_ascii=not unescaped_unicode, separators=(",", ":"))
    return encoded.replace("/", "\\/")  # '/' only ever occurs inside JSON strings


def text(body: str, content_type: str = HTML, status_code: int = 200) -> Response:
    """A reply with exactly this body and content type (``Content-type``, as PHP spells the header)."""
    return Response(body.encode("utf-8"), status_code=status_code, headers={"Content-type": content_type})


async def post_params(request: Request) -> dict[str, str]:
    """``$_POST``: only urlencoded bodies of POST requests are parsed (last value wins, as PHP does)."""
    if request.method != "POST":
        return {}
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    body = (await request.body()).decode("utf-8", errors="replace")
    return dict(parse_qsl(body, keep_blank_values=True))


def intval(value: str) -> int:
    """PHP ``intval`` of a string: the leading integer, 0 when there is none."""
    match = re.match(r"\s*[+-]?\d+", value)
    return int(match.group()) if match else 0


def php_empty(value: str | None) -> bool:
    """PHP ``empty()`` of a request parameter: missing, ``""`` or ``"0"``."""
    return value is None or value in ("", "0")


def php_escape(value: str) -> str:
    """``htmlspecialchars(addslashes(v))``: how submit/mapi store ``name`` and ``param``."""
    slashed = value.replace("\\", "\\\\").replace("'", "\\'").replace('"', '\\"').replace("\0", "\\0")
    return (
        slashed.replace("&", "&amp;").replace('"', "&quot;").replace("'", "&#039;").replace("<", "&lt;")
    ).replace(">", "&gt;")


def cut_bytes(value: str, limit: int) -> str:
    """``mb_strcut``: at most ``limit`` UTF-8 bytes, never splitting a character."""
    return value.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


def parse_money(value: str) -> Decimal | None:
    """A positive amount as the DB stores it (decimal(10,2)), or None where epay says 金额不合法."""
    if not _MONEY.match(value):
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount <= 0:
        return None
    stored = amount.quantize(_CENT, rounding=ROUND_HALF_UP)
    return stored if stored <= _MAX_MONEY else None


def fetch_both(row: Mapping[str, object]) -> dict[str, object]:
    """A row as PDO ``FETCH_BOTH`` returns it: every column by name, then again by position."""
    doubled: dict[str, object] = {}
    for i, (name, value) in enumerate(row.items()):
        doubled[name] = value
        doubled[str(i)] = value
    return doubled
