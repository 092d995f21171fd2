"""epay ("彩虹易支付") protocol V1: the MD5 signature, PHP money formatting, status and reply codes.

Pure functions and constants only, shared by the gateway simulator (which signs notifies and verifies
requests) and by paymon's probes and reconciler (which sign requests and verify notifies). The rules are those
of the epay V1 protocol (signature, notify, ``api.php`` codes); real servers deviate from it in places (observed
behaviour), which is why :func:`coerce_int` accepts numbers that arrive as strings.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from urllib.parse import urlencode

__all__ = [
    "ACK_MARKERS",
    "CODE_AUTH_ERROR",
    "CODE_ERROR",
    "CODE_KEY_ERROR",
    "CODE_MISSING",
    "CODE_NO_ACT",
    "CODE_OK",
    "CODE_PLUGIN_ERROR",
    "EPAY_TIME_FORMAT",
    "EPAY_TZ",
    "NOTIFY_HEADERS",
    "NOTIFY_RETRY_DELAYS",
    "NOTIFY_TIMEOUT_S",
    "PAID_STATUSES",
    "RESUBMIT_WINDOW",
    "SIGN_TYPE_MD5",
    "STATUS_FROZEN",
    "STATUS_NAMES",
    "STATUS_PAID",
    "STATUS_PREAUTH",
    "STATUS_REFUNDED",
    "STATUS_UNPAID",
    "TRADE_SUCCESS",
    "coerce_int",
    "format_epay_time",
    "format_money",
    "is_notify_ack",
    "notify_params",
    "parse_epay_time",
    "sign_content",
    "sign_md5",
    "url_with_query",
    "verify_md5",
]

#: ``pre_order.status`` values. 4 (pre-auth) exists on EP-new only.
STATUS_UNPAID = 0
STATUS_PAID = 1
STATUS_REFUNDED = 2
STATUS_FROZEN = 3
STATUS_PREAUTH = 4
STATUS_NAMES: Mapping[int, str] = {
    STATUS_UNPAID: "unpaid",
    STATUS_PAID: "paid",
    STATUS_REFUNDED: "refunded",
    STATUS_FROZEN: "frozen",
    STATUS_PREAUTH: "pre-auth",
}
#: Statuses that prove the buyer's money was taken at some point (refunded and frozen orders were paid first).
PAID_STATUSES: frozenset[int] = frozenset({STATUS_PAID, STATUS_REFUNDED, STATUS_FROZEN})

#: ``code`` values of ``api.php`` / ``mapi.php`` replies.
CODE_OK = 1
CODE_ERROR = -1  # validation error, bad signature (EP-old mapi), order not found
CODE_PLUGIN_ERROR = -2  # mapi: the upstream payment plugin failed
CODE_KEY_ERROR = -2  # EP-old api.php: KEY校验失败
CODE_AUTH_ERROR = -3  # api.php: unknown pid / wrong key (EP-new); EP-new mapi: bad signature
CODE_MISSING = -4  # no parameters / no order id
CODE_NO_ACT = -5  # api.php: unknown act

#: The only ``trade_status`` a V1 notify ever carries.
TRADE_SUCCESS = "TRADE_SUCCESS"
SIGN_TYPE_MD5 = "MD5"

#: epay counts a notify as acknowledged when the body *contains* one of these (``strpos``, any HTTP status).
ACK_MARKERS: tuple[str, ...] = ("success", "SUCCESS", "Success")

#: How epay's curl sends a notify: GET, 5 s timeout, no redirects, these headers. Shops can recognise
#: epay notifies in their access logs by this User-Agent.
NOTIFY_TIMEOUT_S = 5.0
NOTIFY_HEADERS: Mapping[str, str] = {
    "User-Agent": (
        "Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/78.0.3904.108 Safari/537.36"
    ),
    "Accept": "*/*",
    "Accept-Language": "zh-CN,zh;q=0.8",
    "Connection": "close",
}
#: Seconds between notify attempts when the operator runs ``cron.php?do=notify``: a failed first notify
#: is retried after 1 min, then 2, 16 and 36 min (cumulative 1, 3, 19, 55 min). The cron run after the 5th
#: failure, 1 h later, only marks the order ``notify=-1``: five attempts in all, never more. Without the cron
#: job, or when epay learned of the payment on the buyer's return path, there is only the first attempt.
NOTIFY_RETRY_DELAYS: tuple[float, ...] = (60.0, 120.0, 960.0, 2160.0)
#: An unpaid order can be re-submitted with the same ``out_trade_no`` for 10 days.
RESUBMIT_WINDOW = timedelta(seconds=864000)

#: epay writes naive ``'Y-m-d H:i:s'`` times (``addtime``, ``endtime``, the ``trade_no`` prefix) in Beijing
#: time. China has no DST, so a fixed +08:00 offset is exact.
EPAY_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
EPAY_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

_UNSIGNED = frozenset({"sign", "sign_type"})


def _php_str(value: object) -> str | None:
    """PHP's string conversion of a parameter value, or None when the signer drops the value."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else None
    if isinstance(value, float):
        return format_money(value)
    text = str(value)
    return None if text.strip() == "" else text


def sign_content(params: Mapping[str, object]) -> str:
    """The string that is signed (epay V1 steps 1-4): sorted raw ``k=v`` pairs joined by ``&``, without the key.

    ``sign``/``sign_type``, None and empty or whitespace-only values are left out (EP-new ``isEmpty``).
    Every other parameter counts, including ones the caller does not know about.
    """
    items: list[tuple[str, str]] = []
    for k, v in params.items():
        if k in _UNSIGNED:
            continue
        text = _php_str(v)
        if text is not None:
            items.append((k, text))
    items.sort(key=lambda kv: kv[0].encode("utf-8"))
    return "&".join(f"{k}={v}" for k, v in items)


def sign_md5(params: Mapping[str, object], key: str) -> str:
    """epay V1 signature: ``md5(sign_content(params) + key)`` as lowercase hex (the key is appended bare)."""
    return hashlib.md5((sign_content(params) + key).encode("utf-8")).hexdigest()


def verify_md5(params: Mapping[str, object], key: str) -> bool:
    """True when ``params['sign']`` is the V1 signature of the other parameters; constant-time compare."""
    sign = params.get("sign")
    if not isinstance(sign, str) or not sign:
        return False
    # Exact match, as the servers compare (``===``): an upper-case signature is a bad signature.
    return hmac.compare_digest(sign_md5(params, key).encode("ascii"), sign.encode("utf-8"))


def format_money(amount: Decimal | str | float | int) -> str:
    """Format an amount the way PHP prints ``(float)$amount``: 10.00 → ``10``, 10.50 → ``10.5``, 0.01 →
    ``0.01``.

    dujiaoka signs ``money`` this way and epay builds the notify ``money`` this way, so a replayed or
    recomputed signature must use it too. PHP converts floats with 14 significant digits (``precision=14``).
    """
    value = float(amount)
    if not math.isfinite(value):
        raise ValueError(f"not a finite amount: {amount!r}")
    text = format(value, ".14G")
    if "E" in text:
        raise ValueError(f"amount out of the range PHP prints plainly: {amount!r}")
    return "0" if text == "-0" else text


def coerce_int(value: object) -> int | None:
    """Read a JSON field that real servers send as ``1`` or ``"1"``; None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
    return None


def is_notify_ack(body: str) -> bool:
    """Whether a merchant's reply to a notify counts as acknowledged (substring match)."""
    return any(marker in body for marker in ACK_MARKERS)


def notify_params(
    *,
    pid: int | str,
    trade_no: str,
    out_trade_no: str,
    type: str,
    name: str,
    money: Decimal | str | float,
    key: str,
    param: str | None = None,
) -> dict[str, str]:
    """The signed query of a V1 async notify, in the real server's parameter order.

    ``money`` is printed with :func:`format_money`; ``param`` is only sent when non-empty.
    """
    params: dict[str, str] = {
        "pid": str(pid),
        "trade_no": trade_no,
        "out_trade_no": out_trade_no,
        "type": type,
        "name": name,
        "money": format_money(money),
        "trade_status": TRADE_SUCCESS,
    }
    if param is not None and param.strip() != "":
        params["param"] = param
    params["sign"] = sign_md5(params, key)
    params["sign_type"] = SIGN_TYPE_MD5
    return params


def url_with_query(url: str, params: Mapping[str, str]) -> str:
    """Append urlencoded ``params`` to ``url`` after ``?``, or ``&`` if it has a query (as epay does)."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}{urlencode(params)}"


def format_epay_time(moment: datetime) -> str:
    """An aware datetime as epay prints it: ``'Y-m-d H:i:s'`` Beijing wall-clock time."""
    return moment.astimezone(EPAY_TZ).strftime(EPAY_TIME_FORMAT)


def parse_epay_time(text: str, tz: tzinfo = EPAY_TZ) -> datetime:
    """Read an epay ``'Y-m-d H:i:s'`` time as an aware datetime in ``tz``; ``ValueError`` if malformed."""
    return datetime.strptime(text.strip(), EPAY_TIME_FORMAT).replace(tzinfo=tz)
