"""A test-only PostgreSQL wire-protocol proxy that lets redshift_connector talk to PostgreSQL.

redshift_connector's StartupMessage carries parameters only Redshift knows (``client_protocol_version``,
``driver_version``, ``os_version``, …), which PostgreSQL rejects as unknown configuration parameters,
and the driver parses the ``server_version`` ParameterStatus with ``packaging.version``, which fails on
PostgreSQL's ``15.x (Debian …)``. The proxy drops the former and trims the latter to its plain numeric
part; every other byte passes through untouched, so the driver's own code paths (MD5 authentication,
extended query protocol, type conversion) run against a real server.

Protocol facts used (PostgreSQL 15 docs, "Message Formats"): the first client message has no type byte,
``Int32 length, Int32 code``; code 80877103 is SSLRequest (answered ``N``: no TLS here), 80877104
GSSENCRequest (``N``), 80877102 CancelRequest (forwarded as is), 196608 (3.0) a StartupMessage whose body
is ``name\\0value\\0 … \\0``. Every later message is ``Byte1 type, Int32 length (self included), body``;
ParameterStatus is type ``S`` with body ``name\\0value\\0``, Authentication is type ``R``.

Loopback only; one asyncio loop in a daemon thread. ``drop_connections()`` cuts every open session (a
network failure as the client sees it).
"""

from __future__ import annotations

import asyncio
import re
import struct
import threading
from collections.abc import Coroutine
from typing import Any

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
PROTOCOL_3_0 = 196608

# Startup parameters PostgreSQL understands; everything else the driver sends is Redshift-only.
POSTGRES_STARTUP_PARAMS = frozenset(
    {
        "user",
        "database",
        "options",
        "application_name",
        "client_encoding",
        "DateStyle",
        "TimeZone",
        "replication",
        "search_path",
    }
)
_PLAIN_VERSION = re.compile(rb"^\d+(?:\.\d+)*")


def plain_version(value: bytes) -> bytes:
    """``b"15.8 (Debian 15.8-0+deb12u1)"`` → ``b"15.8"``."""
    match = _PLAIN_VERSION.match(value.strip())
    return match.group(0) if match else value


class PgProxy:
    def __init__(self, upstream_host: str, upstream_port: int, listen_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listen_host = listen_host
        self.port: int | None = None
        self.dropped_params: set[str] = set()
        self.forwarded_params: set[str] = set()
        self.auth_codes: list[int] = []
        self.server_versions: list[tuple[bytes, bytes]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pgproxy", daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._sessions: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()

    # --- lifecycle (called from the test thread) --------------------------------------------------

    def start(self) -> int:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._handle, self.listen_host, 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def stop(self) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            self._abort_all()
            await self._server.wait_closed()

        self._call(shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def drop_connections(self) -> int:
        """Abort every open session, both sides; returns how many were open."""

        async def drop() -> int:
            return self._abort_all()

        return self._call(drop())

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def _abort_all(self) -> int:
        sessions = list(self._sessions)
        for client, upstream in sessions:
            client.transport.abort()
            upstream.transport.abort()
        self._sessions.clear()
        return len(sessions)

    # --- one client session ---------------------------------------------------------------------

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        upstream_w: asyncio.StreamWriter | None = None
        try:
            first = await self._startup(client_r, client_w)
            if first is None:
                return
            upstream_r, upstream_w = await asyncio.open_connection(*self.upstream)
            upstream_w.write(first)
            await upstream_w.drain()
            session = (client_w, upstream_w)
            self._sessions.add(session)
            try:
                pumps = [
                    asyncio.ensure_future(self._pump_raw(client_r, upstream_w)),
                    asyncio.ensure_future(self._pump_messages(upstream_r, client_w)),
                ]
                _, pending = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
            finally:
                self._sessions.discard(session)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            for writer in (client_w, upstream_w):
                if writer is not None:
                    writer.transport.abort()

    async def _startup(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes | None:
        """Answer SSL/GSS requests with 'N'; return the filtered StartupMessage (or forward a cancel)."""
        while True:
            (length,) = struct.unpack("!i", await reader.readexactly(4))
            body = await reader.readexactly(length - 4)
            (code,) = struct.unpack("!i", body[:4])
            if code in (SSL_REQUEST, GSSENC_REQUEST):
                writer.write(b"N")
                await writer.drain()
                continue
            if code == CANCEL_REQUEST:
                _, upstream_w = await asyncio.open_connection(*self.upstream)
                upstream_w.write(struct.pack("!i", length) + body)
                await upstream_w.drain()
                upstream_w.close()
                return None
            if code != PROTOCOL_3_0:
                raise ConnectionError(f"unsupported protocol {code}")
            return self._filtered_startup(body[4:])

    def _filtered_startup(self, params_blob: bytes) -> bytes:
        parts = params_blob.split(b"\0")
        kept = b""
        for name, value in zip(parts[0::2], parts[1::2], strict=False):
            if not name:
                break
            key = name.decode()
            if key in POSTGRES_STARTUP_PARAMS:
                self.forwarded_params.add(key)
                kept += name + b"\0" + value + b"\0"
            else:
                self.dropped_params.add(key)
        body = struct.pack("!i", PROTOCOL_3_0) + kept + b"\0"
        return struct.pack("!i", len(body) + 4) + body

    @staticmethod
    async def _pump_raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass  # either side went away: the session ends

    async def _pump_messages(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._relay_messages(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # either side went away: the session ends

    async def _relay_messages(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            kind = await reader.readexactly(1)
            (length,) = struct.unpack("!i", await reader.readexactly(4))
            body = await reader.readexactly(length - 4)
            if kind == b"R" and len(body) >= 4:
                self.auth_codes.append(struct.unpack("!i", body[:4])[0])
            elif kind == b"S":
                name, value = body.split(b"\0")[:2]
                if name == b"server_version":
                    plain = plain_version(value)
                    self.server_versions.append((value, plain))
                    body = name + b"\0" + plain + b"\0"
            writer.write(kind + struct.pack("!i", len(body) + 4) + body)
            await writer.drain()  # returns at once unless the client is behind
