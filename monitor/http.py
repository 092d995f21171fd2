"""The read-only HTTP endpoint: ``/metrics``, ``/healthz`` and ``/api/status``.

It runs on its own thread (stdlib ``ThreadingHTTPServer``) so a slow scrape or a status query that reads the
database never stalls the asyncio loop that runs the probes. It binds 127.0.0.1 unless configured otherwise.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from monitor.errors import PaymonError

__all__ = ["HttpServer", "cannot_listen"]

log = logging.getLogger(__name__)

HealthFn = Callable[[], tuple[bool, str]]
StatusFn = Callable[[], dict[str, Any]]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        path = self.path.split("?", 1)[0]
        try:
            if path == "/metrics":
                self._send(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok, reason = self.server.health()
                self._json(200 if ok else 503, {"ok": ok, "reason": reason})
            elif path == "/api/status":
                self._json(200, self.server.status())
            else:
                self._json(404, {"error": "not found", "paths": ["/metrics", "/healthz", "/api/status"]})
        except Exception as exc:  # noqa: BLE001 - a failing view answers 500, the server keeps going
            log.error("http %s failed: %s", path, type(exc).__name__)
            self._json(500, {"error": type(exc).__name__})

    def _json(self, status: int, doc: Any) -> None:
        self._send(status, json.dumps(doc, ensure_ascii=False).encode(), "application/json; charset=utf-8")

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("http: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], registry: CollectorRegistry, health: HealthFn,
                 status: StatusFn) -> None:
        self.registry = registry
        self.health = health
        self.status = status
        super().__init__(addr, _Handler)


def cannot_listen(host: str, port: int, exc: OSError) -> PaymonError:
    """The one-line error (exit 1) for an address that cannot be bound: ``cannot listen on 127.0.0.1:9108:
    address already in use``."""
    reason = exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc))
    if exc.errno == errno.EADDRINUSE:
        reason += " (another process listens there: stop it, or choose another port)"
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return PaymonError(f"cannot listen on {address}: {reason[:1].lower()}{reason[1:]}")


class HttpServer:
    """Binds when built (an address in use raises :func:`cannot_listen`'s error); serves after :meth:`start`,
    until :meth:`stop`; ``port`` is the bound port (useful with port 0)."""

    def __init__(self, host: str, port: int, *, registry: CollectorRegistry, health: HealthFn,
                 status: StatusFn) -> None:
        try:
            self._server = _Server((host, port), registry, health, status)
        except OSError as exc:
            raise cannot_listen(host, port, exc) from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="paymon-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    def start(self) -> HttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; safe to call again, and on a server never started."""
        started = self._thread.is_alive()  # shutdown() waits for a serve loop: only when one runs
        if started:
            self._server.shutdown()
        self._server.server_close()
        if started:
            self._thread.join(timeout=5)
