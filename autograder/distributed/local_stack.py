"""A PostgreSQL and a Redis server of this machine's own, in a temporary folder, and a second
"machine" in a network namespace: what the distributed stage's tests and benchmark grade against.

Never a real class's servers (``docs/distributed.md`` says what IT runs). PostgreSQL 15 comes
from Debian's ``postgresql`` package and runs as the ``postgres`` user (``initdb`` and ``pg_ctl``
refuse root); Redis from ``redis-server``, with its append-only file fsynced at every write, so a
restart loses no queued task. Both listen on loopback and, given ``extra_address``, on that
address too (the host end of a veth pair). Passwords are random and are written only to 0600
files: each server's own configuration and the grader's secrets file (``connections.py``).
"""
from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "postgres"
GRADER_ROLE = "grader"
START_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_private(path: Path, text: str, owner: str | None = None) -> Path:
    """Write ``text`` to ``path`` readable by its owner only (0600), created that way."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    if owner:
        entry = pwd.getpwnam(owner)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def _wait_until(ready, what: str, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if ready():
                return
        except (OSError, psycopg.Error, redis.RedisError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up in {timeout_s:.0f} s")
        time.sleep(0.1)


@dataclass
class LocalStack:
    """A running PostgreSQL and Redis under ``folder``; ``stop()`` ends both and removes the folder."""

    folder: Path
    extra_address: str | None = None
    pg_port: int = field(default_factory=free_port)
    redis_port: int = field(default_factory=free_port)
    pg_superuser_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    grader_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    broker_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    redis_process: subprocess.Popen | None = None

    # -- where the grader finds them -------------------------------------------------------
    @property
    def secrets_file(self) -> Path:
        return self.folder / "grading-secrets"

    def gradebook_url(self, database: str = "grading", host: str = "127.0.0.1") -> str:
        """The ``GRADEBOOK`` value for ``database`` (no password: that is in the secrets file)."""
        return f"postgresql://{GRADER_ROLE}@{host}:{self.pg_port}/{database}"

    def broker_url(self, number: int = 0, host: str = "127.0.0.1") -> str:
        """The ``BROKER`` value for Redis database ``number`` (no password)."""
        return f"redis://{host}:{self.redis_port}/{number}"

    # -- PostgreSQL -----------------------------------------------------------------------
    @property
    def pg_data(self) -> Path:
        return self.folder / "postgresql"

    def _as_postgres(self, *command: str) -> None:
        done = subprocess.run(["runuser", "-u", PG_USER, "--", *command], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, cwd=self.folder)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed: {(done.stderr or done.stdout).strip()[-500:]}")

    def start_postgresql(self) -> None:
        """initdb (scram passwords for TCP) and start, listening on loopback (and ``extra_address``)."""
        self.pg_data.mkdir(mode=0o700)
        shutil.chown(self.pg_data, PG_USER, PG_USER)
        password_file = write_private(self.folder / "pg-superuser-password", self.pg_superuser_password, PG_USER)
        self._as_postgres(str(PG_BIN / "initdb"), "-D", str(self.pg_data), "-U", PG_USER, f"--pwfile={password_file}",
                          "--auth-host=scram-sha-256", "--auth-local=peer", "--encoding=UTF8", "--locale=C.UTF-8")
        password_file.unlink()
        listen = ",".join(filter(None, ["127.0.0.1", self.extra_address]))
        with (self.pg_data / "postgresql.conf").open("a") as conf:
            conf.write(f"\nport = {self.pg_port}\nlisten_addresses = '{listen}'\n"
                       f"unix_socket_directories = '{self.pg_data}'\nmax_connections = 200\n")
        if self.extra_address:
            with (self.pg_data / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {self.extra_address}/24 scram-sha-256\n")
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.pg_data), "-l", str(self.pg_data / "server.log"),
                          "-w", "start")
        with self.superuser() as conn:
            conn.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                psycopg.sql.Identifier(GRADER_ROLE), psycopg.sql.Literal(self.grader_password)))

    def superuser(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.pg_port, user=PG_USER, dbname=database,
                               password=self.pg_superuser_password, autocommit=True)

    def create_database(self, name: str) -> str:
        """A new empty database owned by the grader's role; its ``GRADEBOOK`` URL."""
        with self.superuser() as conn:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {} OWNER {}").format(
                psycopg.sql.Identifier(name), psycopg.sql.Identifier(GRADER_ROLE)))
        return self.gradebook_url(name)

    def stop_postgresql(self) -> None:
        if (self.pg_data / "postmaster.pid").exists():
            subprocess.run(["runuser", "-u", PG_USER, "--", str(PG_BIN / "pg_ctl"), "-D", str(self.pg_data),
                            "-m", "immediate", "-w", "stop"], capture_output=True, cwd=self.folder)

    # -- Redis ------------------------------------------------------------------------------
    def start_redis(self) -> None:
        """Start (or start again) Redis with every write in its append-only file, fsynced."""
        data = self.folder / "redis"
        data.mkdir(exist_ok=True)
        bind = " ".join(filter(None, ["127.0.0.1", self.extra_address]))
        conf = write_private(self.folder / "redis.conf", (
            f"port {self.redis_port}\nbind {bind}\nrequirepass {self.broker_password}\ndir {data}\n"
            "appendonly yes\nappendfsync always\nsave \"\"\ndaemonize no\nlogfile \"\"\n"))
        self.redis_process = subprocess.Popen(["redis-server", str(conf)], stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        client = redis.Redis(port=self.redis_port, password=self.broker_password)
        _wait_until(lambda: client.ping() and client.info("persistence")["loading"] == 0, "redis-server")
        client.close()

    def kill_redis(self) -> None:
        """SIGKILL Redis, as a crash or a pulled plug would end it."""
        if self.redis_process is not None and self.redis_process.poll() is None:
            self.redis_process.send_signal(signal.SIGKILL)
            self.redis_process.wait()
        self.redis_process = None

    def redis_client(self, number: int = 0) -> redis.Redis:
        return redis.Redis(port=self.redis_port, db=number, password=self.broker_password)

    # -- all of it ----------------------------------------------------------------------------
    def start(self) -> LocalStack:
        self.start_postgresql()
        self.start_redis()
        write_private(self.secrets_file, f"gradebook_password = {self.grader_password}\n"
                                         f"broker_password = {self.broker_password}\n")
        return self

    def stop(self) -> None:
        self.kill_redis()
        self.stop_postgresql()
        shutil.rmtree(self.folder, ignore_errors=True)


def start_local_stack(extra_address: str | None = None) -> LocalStack:
    """PostgreSQL and Redis in a new folder under ``/tmp`` (which ``postgres`` can enter)."""
    if not (PG_BIN / "initdb").exists():
        raise RuntimeError(f"{PG_BIN / 'initdb'} not found: apt-get install postgresql-15")
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server not found: apt-get install redis-server")
    folder = Path(tempfile.mkdtemp(prefix="grading-stack-", dir="/tmp"))
    os.chmod(folder, 0o755)
    stack = LocalStack(folder, extra_address)
    try:
        return stack.start()
    except BaseException:
        stack.stop()
        raise


# -- a second machine ------------------------------------------------------------------------------
@dataclass
class RemoteHost:
    """A network namespace joined to this one by a veth pair only: ``host_address`` is this
    side's end (where the servers also listen), ``address`` the namespace's."""

    name: str
    host_address: str
    address: str
    veth: str  # this side's end; the namespace's is ``veth`` with ``-r`` for ``-h``

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def remove(self) -> None:
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def make_remote_host(number: int = 1) -> RemoteHost:
    """A namespace ``grading-remote-<pid>-<number>`` with its own loopback and a veth to this one,
    on a /24 of this test's own (never routed anywhere: both ends are on this machine)."""
    subnet = f"10.{200 + number}.{os.getpid() % 250}"
    veth = f"gv{os.getpid() % 100000}-{number}"
    host = RemoteHost(f"grading-remote-{os.getpid()}-{number}", f"{subnet}.1", f"{subnet}.2", f"{veth}-h")
    inside = f"{veth}-r"
    steps = [["ip", "netns", "add", host.name],
             ["ip", "link", "add", host.veth, "type", "veth", "peer", "name", inside],
             ["ip", "link", "set", inside, "netns", host.name],
             ["ip", "addr", "add", f"{host.host_address}/24", "dev", host.veth],
             ["ip", "link", "set", host.veth, "up"],
             host.command("ip", "addr", "add", f"{host.address}/24", "dev", inside),
             host.command("ip", "link", "set", inside, "up"),
             host.command("ip", "link", "set", "lo", "up")]
    try:
        for step in steps:
            subprocess.run(step, check=True, capture_output=True)
    except subprocess.CalledProcessError as exc:
        host.remove()
        raise RuntimeError(f"{' '.join(exc.cmd)}: {exc.stderr.decode(errors='replace').strip()}") from None
    return host
