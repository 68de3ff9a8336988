"""What stands between a visitor and the dashboard's server: the Host allow-list and the error screen.

DNS rebinding: a page on another site can make a visitor's browser send requests to the
dashboard (the attacker's name is made to resolve to the dashboard's address), but it cannot
choose the ``Host`` header: the browser sends the attacker's name. :class:`HostAllowList`, an
ASGI middleware in front of Streamlit (``dashboard/app.py``), refuses every HTTP request (403)
and every WebSocket (closed before it opens) whose Host is not in ``server.allowedHosts``, the
list in ``dashboard/.streamlit/config.toml`` that ``hitsong dashboard --allowed-hosts`` extends.
Streamlit itself checks that list only on its WebSocket and accepts any Host while the list is
empty; here an empty list accepts only the local names (``"*"`` is how to accept any).

:func:`report_script_error` is the app's handler for an uncaught error on a page: the
traceback goes to the server log under a short reference, the visitor sees only the reference.
"""

from __future__ import annotations

import logging
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Accepted when the configured list is empty.
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
#: Close code of a refused WebSocket (policy violation); the client sees HTTP 403.
POLICY_VIOLATION = 1008
REFUSED = (
    b"This dashboard does not answer to that host name. An operator adds names with "
    b"`hitsong dashboard --allowed-hosts NAME` (server.allowedHosts).\n"
)


def host_name(header: str | None) -> str | None:
    """The host name of a ``Host`` header, lower case, without port or trailing dot; ``None`` when malformed."""
    if not header or len(header) > 255:
        return None
    try:
        parts = urllib.parse.urlsplit(f"//{header}")
        _ = parts.port  # validates the port
    except ValueError:
        return None
    if parts.hostname is None or parts.username is not None or parts.path or parts.query or parts.fragment:
        return None
    return parts.hostname.lower().rstrip(".")


def host_allowed(header: str | None, allowed: Sequence[str]) -> bool:
    """Whether the ``Host`` header names an allowed host.

    Parameters
    ----------
    header : str or None
        The request's ``Host`` header (port ignored).
    allowed : sequence of str
        Exact names, ``*.example.org`` (any subdomain of example.org), or ``*`` (any name). An
        empty list allows only :data:`LOCAL_NAMES`.
    """
    name = host_name(header)
    if name is None:
        return False
    for pattern in [p.strip().lower().rstrip(".") for p in allowed] or LOCAL_NAMES:
        if pattern == "*" or name == pattern.strip("[]"):
            return True
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return True
    return False


def configured_hosts() -> list[str]:
    """Streamlit's ``server.allowedHosts`` (config file, then flags)."""
    from streamlit import config

    return list(config.get_option("server.allowedHosts") or [])


class HostAllowList:
    """ASGI middleware: pass requests for an allowed Host on, refuse the others.

    Parameters
    ----------
    app : ASGI app
        What to protect (Streamlit's).
    hosts : callable
        Returns the allowed patterns (see :func:`host_allowed`); read on every request.
    """

    def __init__(self, app: ASGIApp, hosts: Callable[[], Sequence[str]] = configured_hosts) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind in ("http", "websocket"):
            raw = dict(scope.get("headers") or []).get(b"host")
            header = raw.decode("latin-1") if raw is not None else None
            if not host_allowed(header, self.hosts()):
                log.warning("refused a %s request for Host %r: not in server.allowedHosts", kind, (header or "")[:80])
                await _refuse(kind, send)
                return
        await self.app(scope, receive, send)


async def _refuse(kind: str, send: Send) -> None:
    if kind == "websocket":
        await send({"type": "websocket.close", "code": POLICY_VIOLATION})
        return
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(REFUSED)).encode())]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": REFUSED})


def report_script_error(exc: BaseException) -> bool:
    """Log an uncaught page error with its traceback; show the visitor a reference only.

    Returns ``True``: Streamlit then shows nothing of its own (``st.App(on_script_error=...)``).
    """
    import streamlit as st

    reference = secrets.token_hex(4)
    log.error("uncaught error on a dashboard page (reference %s)", reference, exc_info=exc)
    st.error(
        f"Something went wrong on this page. The details are in the dashboard's server log under reference "
        f"**{reference}**; please pass it on to whoever runs the dashboard.",
        icon=":material/error:",
    )
    return True
