"""Secrets from files: ``<NAME>_FILE`` stands in for the environment variable ``<NAME>``.

A team deployment keeps passwords out of the compose file, out of command lines (anyone on the
host can list them) and out of the image: each secret below may be given as a file (a Docker
secret mounted under ``/run/secrets``, or any file readable only by the service) whose path is
in ``<NAME>_FILE``, the convention of the official PostgreSQL image. :func:`resolve_secret_files`
reads those files into the *environment* of the processes hitsong starts (the MLflow server,
the Streamlit server); no secret is ever put on a command line or written to a file by hitsong.
:func:`with_password` puts a database password into a store URI (for that environment only) and
:func:`redact` takes it out again for everything that is written or logged.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

from hitsong.errors import ConfigError

#: The password of the PostgreSQL (or other SQL) user of the MLflow backend store; put into the
#: store URI in the MLflow server's environment only (``registry.server``).
BACKEND_PASSWORD = "HITSONG_BACKEND_STORE_PASSWORD"
#: The password of the read-only service user the dashboard reads runs and models as
#: (``hitsong server --auth --reader NAME`` creates or updates that user).
READER_PASSWORD = "HITSONG_READER_PASSWORD"
#: Every secret that may come from a file.
SECRET_NAMES = (
    "MLFLOW_TRACKING_PASSWORD",  # a client's own password (the dashboard's service reader, a trainer)
    "MLFLOW_AUTH_ADMIN_PASSWORD",  # the MLflow basic-auth admin, read by the server on start
    "MLFLOW_FLASK_SERVER_SECRET_KEY",  # signs the MLflow UI's login sessions
    BACKEND_PASSWORD,
    READER_PASSWORD,
)
#: Largest secret file read, bytes (a password or key, not a document).
MAX_SECRET_BYTES = 4096


def resolve_secret_files(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``env`` in which every ``<NAME>_FILE`` of :data:`SECRET_NAMES` is replaced by ``<NAME>``.

    The file's content is the secret; one trailing newline (as ``echo`` writes) is dropped.

    Raises
    ------
    ConfigError
        Both ``<NAME>`` and ``<NAME>_FILE`` are set, or the file is missing, unreadable, empty or
        larger than :data:`MAX_SECRET_BYTES`. The message names the variable and the file, never
        the content.
    """
    out = dict(env)
    for name in SECRET_NAMES:
        path = out.pop(f"{name}_FILE", None)
        if not path:
            continue
        if out.get(name):
            raise ConfigError(f"both {name} and {name}_FILE={path} are set; keep one of them")
        try:
            raw = Path(path).read_bytes()[: MAX_SECRET_BYTES + 1]
        except OSError as exc:
            raise ConfigError(f"{name}_FILE={path}: cannot read the secret file ({exc.strerror})") from exc
        if len(raw) > MAX_SECRET_BYTES:
            raise ConfigError(f"{name}_FILE={path}: more than {MAX_SECRET_BYTES} bytes; is it the right file?")
        try:
            value = raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{name}_FILE={path}: the secret file is not UTF-8 text") from exc
        if not value:
            raise ConfigError(f"{name}_FILE={path}: the secret file is empty")
        out[name] = value
    return out


def apply_secret_files() -> None:
    """Resolve ``<NAME>_FILE`` variables into this process's own environment (see :func:`resolve_secret_files`)."""
    resolved = resolve_secret_files(os.environ)
    for name in SECRET_NAMES:
        os.environ.pop(f"{name}_FILE", None)
        if name in resolved:
            os.environ[name] = resolved[name]


def redact(uri: str) -> str:
    """``uri`` with the password of its user part replaced by ``***`` (for files and logs)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = f"{parts.username or ''}:***@{parts.netloc.rsplit('@', 1)[1]}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def with_password(uri: str, password: str | None) -> str:
    """``uri`` with ``password`` (percent-encoded) as its user's password; ``uri`` when ``None``.

    Raises
    ------
    ConfigError
        The URI has no user to give the password to, or already holds a password.
    """
    if password is None:
        return uri
    parts = urllib.parse.urlsplit(uri)
    if parts.password is not None:
        raise ConfigError(
            f"the backend store URI {redact(uri)} already holds a password and {BACKEND_PASSWORD} is set too; "
            "give the password one way (the variable keeps it off command lines)"
        )
    if not parts.username:
        raise ConfigError(
            f"the backend store URI {uri} names no user for {BACKEND_PASSWORD}; use scheme://USER@HOST/DB"
        )
    user, host = parts.netloc.rsplit("@", 1)
    netloc = f"{user}:{urllib.parse.quote(password, safe='')}@{host}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
