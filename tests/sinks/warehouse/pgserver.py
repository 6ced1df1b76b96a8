"""A private PostgreSQL 15 server for tests and benchmarks: ``initdb`` in a temporary folder, listening on
127.0.0.1 on a free port, no Unix socket, MD5 password authentication over TCP, removed when done.

PostgreSQL refuses to run as root, so when this process is root the server runs as ``nobody`` (the data
folder is handed to that user); otherwise it runs as the current user.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

PG_BIN = Path(os.environ.get("MEDIAPULSE_PG_BIN", "/usr/lib/postgresql/15/bin"))
DATABASE = "mediapulse"
TEST_ROLE = "mediapulse_test"
SERVER_USER = "nobody"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class PgServer:
    host: str
    port: int
    superuser: str
    superpass: str
    role: str
    password: str
    data: Path | None = None  # the data folder, for stop() and start()
    options: str = ""

    def stop(self) -> None:
        """Stop the server the way a maintenance window does (``fast``: sessions are ended, open
        transactions rolled back); its data stays for :meth:`start`."""
        assert self.data is not None
        _pg_ctl(self.data, "-m", "fast", "-w", "-t", "30", "stop")

    def start(self) -> None:
        """Start the stopped server again, on the same port, and wait until it accepts connections."""
        assert self.data is not None
        _pg_ctl(
            self.data,
            "-l",
            str(self.data.parent / "server.log"),
            "-w",
            "-t",
            "30",
            "-o",
            self.options,
            "start",
        )

    def admin(self, dbname: str = DATABASE) -> psycopg.Connection:
        """A superuser connection in autocommit mode."""
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.superuser,
            password=self.superpass,
            dbname=dbname,
            autocommit=True,
            passfile=os.devnull,
        )

    def url(self, schema: str) -> str:
        """A ``postgresql://`` warehouse URL for the test role (password from the environment)."""
        return f"postgresql://{self.role}@{self.host}:{self.port}/{DATABASE}?schema={schema}"


def available() -> bool:
    return (PG_BIN / "initdb").exists()


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", SERVER_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def _pg_ctl(data: Path, *args: str) -> None:
    subprocess.run(
        _as_server_user([str(PG_BIN / "pg_ctl"), "-D", str(data), *args]),
        check=True,
        capture_output=True,
        text=True,
    )


@contextmanager
def private_postgres(role_password: str | None = None, durable: bool = False) -> Iterator[PgServer]:
    """Start the server, create the test role (MD5 password) and database; stop and delete on exit.

    Not ``durable`` (the default, for tests): fsync, synchronous commit and full-page writes are off.
    """
    root = Path(tempfile.mkdtemp(prefix="mediapulse-pg-"))
    data = root / "data"
    superpass = secrets.token_hex(12)
    password = role_password or "test-only-" + secrets.token_hex(8)
    pwfile = root / "pwfile"
    pwfile.write_text(superpass + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, SERVER_USER)
        shutil.chown(pwfile, SERVER_USER)
    pwfile.chmod(0o600)
    port = free_port()
    ctl = str(PG_BIN / "pg_ctl")
    try:
        subprocess.run(
            _as_server_user(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    f"--pwfile={pwfile}",
                    "--auth-host=md5",
                    "--auth-local=reject",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ]
            ),
            check=True,
            capture_output=True,
            text=True,
        )
        pwfile.unlink()
        options = f"-h 127.0.0.1 -p {port} -k '' -c max_connections=40 -c max_pred_locks_per_transaction=256"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        server = PgServer("127.0.0.1", port, "postgres", superpass, TEST_ROLE, password, data, options)
        server.start()
        with server.admin("postgres") as conn:
            conn.execute("SET password_encryption = 'md5'")
            conn.execute(f"CREATE ROLE {TEST_ROLE} LOGIN PASSWORD '{password}'")
            conn.execute(f"CREATE DATABASE {DATABASE} OWNER {TEST_ROLE}")
        yield server
    finally:
        if data.exists():
            subprocess.run(
                _as_server_user([ctl, "-D", str(data), "-m", "immediate", "stop"]), capture_output=True
            )
        shutil.rmtree(root, ignore_errors=True)
