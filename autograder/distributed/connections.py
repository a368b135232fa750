"""Where the gradebook (PostgreSQL) and the broker (Redis) are, and their passwords.

Addresses come from the environment: ``GRADEBOOK`` (``postgresql://user@host:port/database``)
and ``BROKER`` (``redis://[user@]host:port/number``); the Makefile exports its variables of those
names, so no command line carries them. A URL must hold no password: one given on a command line
is readable by every user in the process list. Passwords live in the secrets file, readable by
its owner only (mode 0600, else refused), at ``$GRADING_SECRETS`` or
``~/.config/acceleration-lab/grading-secrets``::

    gradebook_password = ...
    broker_password = ...

A password missing there is left to the client: libpq's ``~/.pgpass`` or ``PGPASSWORD`` for
PostgreSQL, none for Redis. Student code never sees any of it: the sandbox builds its
environment from an allow-list, hides this repository and has no network.
"""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from sqlalchemy import URL, Engine, create_engine, make_url
from sqlalchemy.pool import NullPool

SECRETS_VARIABLE = "GRADING_SECRETS"
DEFAULT_SECRETS = Path("~/.config/acceleration-lab/grading-secrets")
SECRET_NAMES = ("gradebook_password", "broker_password")


class ConnectionSettingsError(ValueError):
    """A URL or the secrets file that the distributed stage cannot use; the message says why."""


def secrets_path() -> Path:
    return Path(os.environ.get(SECRETS_VARIABLE) or DEFAULT_SECRETS).expanduser()


def read_secrets(path: Path | None = None) -> dict[str, str]:
    """``name = value`` lines of the secrets file (none if it does not exist); refused unless
    only its owner may read it."""
    path = path or secrets_path()
    if not path.exists():
        return {}
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConnectionSettingsError(f"{path} can be read by other users (mode {mode:o}): chmod 600 {path}")
    found = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, equals, value = line.partition("=")
        if not equals or name.strip() not in SECRET_NAMES:
            raise ConnectionSettingsError(f"{path} line {number}: expected one of {', '.join(SECRET_NAMES)} = value")
        found[name.strip()] = value.strip()
    return found


def _refuse_password(variable: str, has_password: bool) -> None:
    if has_password:
        raise ConnectionSettingsError(f"{variable} holds a password, which the process list would show: "
                                      f"remove it from the URL and put it in {secrets_path()} (docs/distributed.md)")


def gradebook_url(url: str, secrets: dict[str, str] | None = None) -> URL:
    """``GRADEBOOK`` as a SQLAlchemy URL with the psycopg 3 driver and the password from the secrets file."""
    try:
        parsed = make_url(url)
    except Exception:
        raise ConnectionSettingsError("GRADEBOOK is not a URL: expected postgresql://user@host:port/database") from None
    if parsed.get_backend_name() != "postgresql":
        raise ConnectionSettingsError(f"GRADEBOOK must be a postgresql:// URL, not {parsed.drivername}://")
    _refuse_password("GRADEBOOK", parsed.password is not None)
    password = (read_secrets() if secrets is None else secrets).get("gradebook_password")
    return parsed.set(drivername="postgresql+psycopg", password=password)


def broker_url(url: str, secrets: dict[str, str] | None = None) -> str:
    """``BROKER`` with the password from the secrets file (a string only this process holds)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ConnectionSettingsError(f"BROKER must be a redis:// URL, not {parts.scheme or url!r}")
    _refuse_password("BROKER", parts.password is not None)
    password = (read_secrets() if secrets is None else secrets).get("broker_password")
    if password is None:
        return url
    user = quote(parts.username or "", safe="")
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


def shown(url: str) -> str:
    """``url`` as it may be printed: never with a password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


def environment_url(variable: str) -> str:
    """The value of ``GRADEBOOK`` or ``BROKER``; an error naming the make variable when unset."""
    value = os.environ.get(variable, "").strip()
    if not value:
        raise ConnectionSettingsError(f"{variable} is not set: give {variable}=... to make (docs/distributed.md)")
    return value


def gradebook_engine(url: URL, *, pooled: bool = True) -> Engine:
    """An engine on the PostgreSQL gradebook. ``pooled=False``: every ``connect()`` is a new
    session, ended by ``close()`` (a grading worker's advisory locks end with it)."""
    return create_engine(url, pool_pre_ping=True, **({} if pooled else {"poolclass": NullPool}))
