"""A loopback HTTP proxy in front of a real server, for faults a real network has.

Every request is forwarded to ``target`` and its answer passed back, except that

- ``host`` (when given) replaces the ``Host`` header, as a client reaching the server by another
  name would send it (``mlflow:5000`` inside a compose network, a DNS-rebinding page's name);
- a request whose path ends with one of ``fail`` is answered ``400 INJECTED_FAULT`` without
  reaching the server: the call fails at that exact point, whatever client library made it
  (a crash between two writes, seen from the server's side).

    with FaultProxy(server.uri, fail={"registered-models/alias"}) as proxy:
        promote(model, version, reason, tracking_uri=proxy.uri)   # the alias call fails
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import requests

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length", "host"}


class FaultProxy:
    """A proxy on a free loopback port; a context manager (``.uri`` while it runs)."""

    def __init__(self, target: str, *, host: str | None = None, fail: Iterable[str] = ()) -> None:
        self.target = target.rstrip("/")
        self.host = host
        self.fail = set(fail)
        self.failed: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # quiet
                return

            def _forward(self) -> None:
                path = urlsplit(self.path).path
                if any(path.endswith(f) for f in proxy.fail):
                    proxy.failed.append(path)
                    body = json.dumps({"error_code": "INJECTED_FAULT", "message": f"fault injected at {path}"})
                    self._reply(400, {"Content-Type": "application/json"}, body.encode())
                    return
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                headers["Host"] = proxy.host or urlsplit(proxy.target).netloc
                resp = requests.request(
                    self.command, proxy.target + self.path, headers=headers, data=data, timeout=60,
                    allow_redirects=False,
                )  # fmt: skip
                kept = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP}
                self._reply(resp.status_code, kept, resp.content)

            def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _forward

        return Handler
