"""The epay V2 (EP-new's RSA API) client: signed ``api/<method>`` form POSTs, verified answers.

Every request carries ``pid``, ``timestamp`` (seconds, from the context's clock; the server rejects more than
±300 s of skew) and an RSA signature (SHA256withRSA with the merchant private key, :mod:`monitor.protocols.epay_v2`).
Successful replies (code 0) are signed by the platform: each is verified with ``platform_public_key`` over all
top-level scalar fields and a reply that does not verify is ``bad_signature``, never ``ok``. Error replies
are unsigned (``echojsonmsg``).

Answers: a message saying 维护/繁忙 (the simulator's ``{"code":-1,"msg":"系统维护中"}``) is ``maintenance``; any
other error code is ``business_error`` with the gateway's code and message (-1 商户不存在！ for an unknown
pid, -3 signature/auth/timestamp, -4 no parameters, -5 unknown method), judged by V1's
:func:`~monitor.clients.epay.fail_on_code`. JSON is parsed whatever the Content-Type (``api/pay/create`` answers
text/html) and numbers may be strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from monitor.clients.base import GatewayClient, ProbeContext, ProbeFailure, fetch, parse_json
from monitor.config.channels import ChannelConfig
from monitor.protocols import epay_v2 as v2

__all__ = ["EpayV2Client"]


class EpayV2Client(GatewayClient):
    """The wire of a channel of ``kind: epay_v2`` (credentials ``pid``, ``private_key``, ``platform_public_key``)."""

    kind = "epay_v2"
    needs = ("pid", "private_key", "platform_public_key")
    say = "both"

    def __init__(self, channel: ChannelConfig) -> None:
        super().__init__(channel)
        self.pid = self.credentials["pid"]
        self._private: rsa.RSAPrivateKey = self.load_credential(
            "private_key", v2.load_private_key,
            "credential private_key is not an RSA private key (PEM or bare base64 PKCS#8)")
        self._platform: rsa.RSAPublicKey = self.load_credential(
            "platform_public_key", v2.load_public_key,
            "credential platform_public_key is not an RSA public key (PEM or bare base64)")

    async def call(self, ctx: ProbeContext, method: str, timeout: float,
                   params: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """POST a signed ``api/<method>``; the HTTP status and the decoded reply, its signature verified when
        the code is 0 (``bad_signature`` otherwise). Error replies are returned unverified (they are unsigned)."""
        body = {"pid": self.pid.reveal(), **params, "timestamp": str(int(ctx.clock.now().timestamp()))}
        body["sign"] = v2.sign_rsa(body, self._private)
        body["sign_type"] = v2.SIGN_TYPE_RSA
        reply = await fetch(ctx.client, "POST", self.base + "api/" + method, data=body, timeout=timeout)
        doc = parse_json(reply)
        if str(doc.get("code", "")).strip() == str(v2.CODE_OK):
            sign = doc.get("sign")
            if not isinstance(sign, str) or not sign:
                raise ProbeFailure("bad_signature", f"api/{method}: code 0 reply without a signature", code="0")
            if not v2.verify_rsa(doc, sign, self._platform):
                raise ProbeFailure("bad_signature",
                                   f"api/{method}: reply signature does not verify with the platform key", code="0")
        return reply.status, doc
