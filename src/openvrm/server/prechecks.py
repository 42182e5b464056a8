"""The checks of a pushed event that need no database, and the worker processes that run them.

Before any transaction, a pushed event is checked by :func:`check_push`: the request's RFC 9421 signature
(under the key its ``keyid`` names), the body as JSON and against the ledger-event schema, the event's
hashes, and its own JWS signature when the signer is its author. These checks need neither the database
nor a vault key, and they are most of a push's work. In one process they take turns for the interpreter
lock with everything else the server does, so on a machine with more than one core the server hands them
to :class:`CheckWorkers` when pushes overlap (several vendors pushing at once): the server's own process is
then left with the transaction. A lone push is checked in its own thread, since the hop to a worker would
only add to its latency.

What a worker is given: the request's URL, headers and body, over a socket pair that only the server and
its own child process hold; nothing is written to disk and a worker logs nothing. What it answers: the
signer's ``keyid``, the parsed record and the nonce to spend; or the refusal (the error's class and
message), which the server raises as if it had checked the push itself; or "unchecked" after an
unexpected error, and the server then checks that push itself, so the error surfaces there. Which key may
sign for a relationship, the nonce, the idempotency key and the connection's status are still checked by
the server, in the push's own write transaction.

A worker that dies loses nothing: the pushes it held are checked by the server, and a new worker starts
with the next overlapping push (after too many deaths in a row, the server stops using workers and says
so in its log).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from openvrm.errors import OpenVRMError
from openvrm.logs import get_logger, log_event
from openvrm.protocol import messages as m
from openvrm.protocol.httpsig import RequestVerifier, did_key_resolver

log = get_logger("openvrm.server.checks")

MAX_PROTOCOL_BODY = 1024 * 1024
MAX_WORKERS = 4
"""Check workers an automatic setting starts at most (one fewer than the cores the server may use)."""
MAX_DEATHS = 5
"""Worker deaths in a row (with no push checked in between) after which the server stops using workers."""

START_TIMEOUT = 60.0
"""Seconds a forced check (``always``) waits for a worker to start before checking the push itself."""

_FRAME = struct.Struct("!I")


@dataclass
class DeferredNonces:
    """A nonce store that only notes the pair: the caller inserts it in the request's own transaction,
    where the primary key refuses a replay (so a replayed request adds nothing)."""

    seen: list[tuple[str, str, datetime]] = field(default_factory=list)

    def remember(self, keyid: str, nonce: str, expires_at: datetime, now: datetime) -> bool:
        if len(keyid) > 200 or len(nonce) > 128:
            return False
        self.seen.append((keyid, nonce, expires_at))
        return True


@dataclass(frozen=True)
class CheckedPush:
    """A push that passed every check needing no database: who signed it, its event, the nonce to spend."""

    keyid: str
    record: dict[str, Any]
    nonces: DeferredNonces


def check_push(url: str, headers: Mapping[str, str], body: bytes) -> CheckedPush:
    """Check a pushed event's request signature, JSON, schema, hashes and (the signer's own) signature.

    Raises :class:`~openvrm.protocol.errors.SignatureError` or :class:`~openvrm.protocol.messages.
    ProtocolViolation` saying why. The nonce is only noted: the caller spends it in its transaction.
    """
    nonces = DeferredNonces()
    # Which did:key may sign for this relationship is checked against the connection row in the push's
    # write transaction: here the signature must verify under the key its keyid names.
    verifier = RequestVerifier(did_key_resolver, nonces, max_body_bytes=MAX_PROTOCOL_BODY)
    keyid = verifier.verify("POST", url, headers, body).keyid
    try:
        record = json.loads(body)
    except ValueError:
        raise m.ProtocolViolation("the body is not JSON") from None
    if not isinstance(record, dict) or record.get("type") != "event":
        raise m.ProtocolViolation("the agent's ledger accepts ledger events (type 'event')")
    m.validate("ledger-event", record)
    m.check_event_hashes(record)
    if record["author"] == keyid:
        # The signer's own event: its signature is checked here. An event by anyone else is refused in
        # the transaction, once the connection says whether the signer is this relationship's vendor (401)
        # or the event is not theirs (422).
        m.verify_signers(record, [keyid])
    return CheckedPush(keyid, record, nonces)


def automatic_workers() -> int:
    """One worker for each core the server may use beyond its own, at most :data:`MAX_WORKERS`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(0, min(MAX_WORKERS, cores - 1))


# -- the worker process ----------------------------------------------------------------------------------


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _send_frame(sock: socket.socket, message: tuple[Any, ...]) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_FRAME.pack(len(data)) + data)


def _answer(url: str, headers: Mapping[str, str], body: bytes) -> tuple[Any, ...]:
    try:
        return ("ok", check_push(url, headers, body))
    except OpenVRMError as exc:
        return ("refused", type(exc), exc.message)
    except Exception:  # noqa: BLE001 - a bug: the server checks this push itself, where it is logged
        return ("unchecked",)


_ENTRY = "from openvrm.server.prechecks import serve_checks; serve_checks"


def serve_checks(fd: int) -> None:
    """A worker's loop on the socket ``fd``: read a push, check it, answer; return when the server closes
    its end."""
    sock = socket.socket(fileno=fd)
    # A terminal's Ctrl-C reaches the whole process group; the server decides when its workers end.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(m.ProtocolViolation):
        m.validate("ledger-event", {})  # compile the schema before saying ready
    with sock, contextlib.suppress(ConnectionError):  # the server closed its end (or went away): done
        _send_frame(sock, ("ready",))
        while True:
            head = _recv_exactly(sock, _FRAME.size)
            if head is None:
                return
            frame = _recv_exactly(sock, _FRAME.unpack(head)[0])
            if frame is None:
                return
            tag, url, headers, body = pickle.loads(frame)  # noqa: S301 - from the server that started us
            _send_frame(sock, (tag, *_answer(url, headers, body)))


# -- the server's side -----------------------------------------------------------------------------------


class _Worker:
    """One worker process, and the pushes it holds (by tag) until it answers."""

    def __init__(self, pool: CheckWorkers) -> None:
        self._pool = pool
        ours, theirs = socket.socketpair()
        # A fresh interpreter (not a fork: the server runs threads and holds keys), started by module
        # name, so the worker imports openvrm alone and never the server's own main script.
        command = [sys.executable, "-c", f"{_ENTRY}({theirs.fileno()})"]
        try:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                command, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
            )
        finally:
            theirs.close()
        self.ready = asyncio.Event()
        self.alive = True
        self.pending: dict[int, asyncio.Future[CheckedPush | None]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reading = asyncio.get_running_loop().create_task(self._read(ours))

    async def _read(self, sock: socket.socket) -> None:
        try:
            reader, self._writer = await asyncio.open_connection(sock=sock)
            while True:
                head = await reader.readexactly(_FRAME.size)
                message = pickle.loads(await reader.readexactly(_FRAME.unpack(head)[0]))  # noqa: S301
                if message[0] == "ready":
                    self.ready.set()
                    continue
                self._settle(message)
        except (asyncio.IncompleteReadError, OSError):
            pass
        finally:
            self._end()

    def _settle(self, message: tuple[Any, ...]) -> None:
        tag, status, *rest = message
        future = self.pending.pop(tag, None)
        if future is None or future.done():
            return
        self._pool.deaths = 0  # it answered: whatever killed an earlier worker did not kill this one
        if status == "ok":
            self._pool.checked += 1
            future.set_result(rest[0])
        elif status == "refused":
            error_class, text = rest
            self._pool.checked += 1
            future.set_exception(error_class(text))
        else:
            future.set_result(None)

    def _end(self) -> None:
        """The worker is gone or closed: whatever it held is checked by the server instead."""
        if not self.alive:
            return
        self.alive = False
        for future in self.pending.values():
            if not future.done():
                future.set_result(None)
        self.pending.clear()
        if self._writer is not None:
            self._writer.close()
        if not self._pool.closing:
            self._pool.lost(self)

    def submit(
        self, tag: int, url: str, headers: Mapping[str, str], body: bytes
    ) -> asyncio.Future[CheckedPush | None]:
        assert self._writer is not None  # noqa: S101 - only ready workers are given pushes
        future: asyncio.Future[CheckedPush | None] = asyncio.get_running_loop().create_future()
        self.pending[tag] = future
        data = pickle.dumps((tag, url, dict(headers), body), protocol=pickle.HIGHEST_PROTOCOL)
        self._writer.write(_FRAME.pack(len(data)) + data)
        return future

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reading
        await asyncio.get_running_loop().run_in_executor(None, self._stop)

    def _stop(self) -> None:
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


class CheckWorkers:
    """Worker processes that run :func:`check_push` for overlapping pushes (see the module documentation).

    ``size`` workers at most (0: every push is checked in the server's own process). They start with the
    first overlapping push, on the running event loop, and end with :meth:`close` (the server's shutdown).
    ``always`` hands every push to a worker, overlapping or not (for tests).
    """

    def __init__(self, size: int, *, always: bool = False) -> None:
        self.size = size
        self.always = always
        self.checked = 0
        """Pushes a worker checked (passed or refused), for tests and benchmarks."""
        self.deaths = 0
        self.closing = False
        self._workers: list[_Worker] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_flight = 0
        self._tags = 0

    @contextlib.asynccontextmanager
    async def push(self) -> AsyncIterator[None]:
        """Count a push in progress, so the next one knows whether it overlaps."""
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1

    async def check(self, url: str, headers: Mapping[str, str], body: bytes) -> CheckedPush | None:
        """Check the push in a worker if that is worth it now; ``None`` when the caller must check it.

        Raises the refusal a worker gave, exactly as :func:`check_push` would have.
        """
        if self.size == 0 or self.closing or (self._in_flight < 2 and not self.always):
            return None
        worker = self._ready_worker()
        if worker is None and self.always and self._workers:
            # Forced (tests): wait for the worker to start rather than check the push here.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._workers[0].ready.wait(), START_TIMEOUT)
            worker = self._ready_worker()
        if worker is None:
            return None
        self._tags += 1
        return await worker.submit(self._tags, url, headers, body)

    def _ready_worker(self) -> _Worker | None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (a restarted server): workers of the old one are gone
            for worker in self._workers:
                worker.alive = False
            self._workers = []
            self._loop = loop
        if len(self._workers) < self.size and self.deaths < MAX_DEATHS:
            self._workers.append(_Worker(self))
        ready = [w for w in self._workers if w.ready.is_set() and w.alive]
        return min(ready, key=lambda w: len(w.pending)) if ready else None

    def lost(self, worker: _Worker) -> None:
        """A worker died (not closed by us): forget it; a new one starts with the next overlapping push."""
        if worker in self._workers:
            self._workers.remove(worker)
        self.deaths += 1
        if self.deaths >= MAX_DEATHS:
            log_event(log, "checks.disabled", deaths=self.deaths)
        else:
            log_event(log, "checks.worker_lost", exitcode=worker.process.poll())

    def processes(self) -> list[subprocess.Popen[bytes]]:
        return [w.process for w in self._workers if w.alive]

    async def close(self) -> None:
        """Stop the workers (each ends when its socket closes; one that does not is killed)."""
        self.closing = True
        workers, self._workers = self._workers, []
        if self._loop is asyncio.get_running_loop():
            for worker in workers:
                await worker.close()
        else:
            for worker in workers:
                worker.process.kill()
                worker.process.wait(timeout=5)
        self.closing = False
