"""`vrm mail serve`: the SMTP gateway, an aiosmtpd server in front of :class:`openvrm.mail.gateway.Gateway`.

One asyncio loop runs the SMTP server and the spool's delivery task. Each RCPT is answered by the gateway
(known active alias, or a reply from the person's own address, else refused: never an open relay); each
DATA is answered 250 only once the message is stored. The database and DNS work runs in worker threads so
one slow message never stalls the other connections (an RCPT to an alias the gateway has cached is
answered on the loop itself). Any unexpected error is a 451 (the sender keeps the
message and tries again), logged without addresses or content.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import signal
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from aiosmtpd.smtp import SMTP
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from aiosmtpd.smtp import Session as SmtpSession

from openvrm.errors import NotFound
from openvrm.logs import log_event
from openvrm.mail.analysis import Refused
from openvrm.mail.gateway import CacheMiss, Envelope, Gateway, Handed, Spool, SpoolReport
from openvrm.mail.routing import Downstream
from openvrm.outbox.settings import MailSettings
from openvrm.outbox.transport import SmtpTransport, Transport

log = logging.getLogger("openvrm.mail")
DELIVERY_BATCH = 50
HANDOFF_MAX = 1000
DELETE_DELAY = 0.05
"""Seconds delivered hand-off rows may wait to be deleted together (far inside their lease, so no other
deliverer can take them meanwhile; a crash in that window sends them again, as at-least-once allows)."""
"""Spooled messages at most waiting in memory for this process's deliverer; beyond, rows are written due
and a claim round takes them."""
# aiosmtpd logs every command (addresses included) at DEBUG and INFO: only its warnings may pass.
logging.getLogger("mail.log").setLevel(logging.WARNING)


def server_tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A TLS context for STARTTLS from a certificate chain and its key (PEM), TLS 1.2 at least."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def downstream_transport(ds: Downstream, sender: str) -> Transport:
    return SmtpTransport(
        MailSettings(
            host=ds.host,
            port=ds.port,
            tls=ds.tls,
            from_addr=sender,
            username=ds.username,
            password=ds.password,
            validate_certs=ds.validate_certs,
        ),
        timeout=30,
    )


class Handler:
    """aiosmtpd hooks; every decision is the gateway's."""

    def __init__(self, gateway: Gateway, on_accept: Callable[[list[Handed]], None]) -> None:
        self.gateway = gateway
        self.on_accept = on_accept

    @staticmethod
    def _ours(session: SmtpSession, envelope: SmtpEnvelope) -> Envelope:
        env = getattr(envelope, "openvrm", None)
        if env is None:
            peer = session.peer[0] if isinstance(session.peer, tuple) else None
            env = Envelope(peer_ip=peer, helo=session.host_name or "", mail_from=envelope.mail_from or "")
            envelope.openvrm = env  # type: ignore[attr-defined]
        return env

    async def handle_MAIL(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: SmtpSession, envelope: SmtpEnvelope, address: str, options: list[str]
    ) -> str:
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        envelope.openvrm = None  # type: ignore[attr-defined]
        self._ours(session, envelope)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802
        self, server: SMTP, session: SmtpSession, envelope: SmtpEnvelope, address: str, options: list[str]
    ) -> str:
        env = self._ours(session, envelope)
        try:
            try:
                # An alias seen in the last seconds is answered here, without a database read or a
                # hop to a worker thread; anything else is decided by the database, off the loop.
                recipient = self.gateway.recipient(env, address, cached_only=True)
            except CacheMiss:
                recipient = await asyncio.to_thread(self.gateway.recipient, env, address)
        except Refused as r:
            return f"{r.code} {r.text}"
        except NotFound:
            return "451 4.3.0 the gateway is not set up yet"
        except Exception as exc:  # noqa: BLE001 - never crash a connection; the sender retries
            log_event(log, "mail.rcpt_failed", error=type(exc).__name__)
            return "451 4.3.0 temporary failure, try again later"
        env.recipients.append(recipient)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: SmtpSession, envelope: SmtpEnvelope
    ) -> str:
        env = self._ours(session, envelope)
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        try:
            accepted = await asyncio.to_thread(self.gateway.accept, env, raw)
        except Refused as r:
            log_event(log, "mail.refused", code=r.code)
            return f"{r.code} {r.text}"
        except Exception as exc:  # noqa: BLE001 - the sender keeps the message and tries again
            log_event(log, "mail.accept_failed", error=type(exc).__name__)
            return "451 4.3.0 temporary failure, try again later"
        log_event(log, "mail.accepted", recipients=len(env.recipients), spooled=accepted.spooled)
        if accepted.spooled:
            self.on_accept(accepted.handed)
        return "250 2.0.0 OK: stored"


@dataclass
class GatewayServer:
    """The SMTP server and the spool's delivery loop on one asyncio loop."""

    gateway: Gateway
    host: str = "127.0.0.1"
    port: int = 2525
    poll_seconds: float = 15.0
    transport_factory: Callable[[Downstream, str], Transport] = downstream_transport
    # With a certificate, STARTTLS is offered to senders (they choose; MX-to-MX TLS is opportunistic).
    tls_context: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        self.spool = Spool(self.gateway.vault.db, self.gateway.keys, clock=self.gateway.clock)
        self._wake: asyncio.Event | None = None
        self._server: asyncio.AbstractServer | None = None
        self._delivery: asyncio.Task[None] | None = None
        self._stopping = False
        self.last_report: SpoolReport | None = None
        self.delivered = 0
        # The downstream connection, kept open across delivery rounds on the server's own loop (a round
        # per accepted message would otherwise pay a connect and EHLO each); closed when idle and at stop.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kept: Transport | None = None
        self._kept_for: tuple[Downstream, str] | None = None
        # Rows the gateway wrote leased to this deliverer (sent without a claim transaction); a claim
        # round (the database's due rows) runs at start, at the idle poll, and when mail was spooled due.
        self._handed: collections.deque[Handed] = collections.deque()
        self._sent: list[str] = []  # delivered hand-off rows not deleted yet (see DELETE_DELAY)
        self._claim_due = True
        self.gateway.handoff = self._takes_handoff

    def _takes_handoff(self) -> bool:
        return (
            not self._stopping
            and self._loop is not None
            and self._delivery is not None
            and not self._delivery.done()
            and len(self._handed) < HANDOFF_MAX
        )

    def accepted(self, handed: list[Handed]) -> None:
        """A message was spooled (on the loop): queue what was handed over, wake the deliverer."""
        self._handed.extend(handed)
        if not handed:
            self._claim_due = True
        self.wake()

    def _factory(self) -> SMTP:
        cfg = self.gateway.config()
        return SMTP(
            Handler(self.gateway, self.accepted),
            data_size_limit=cfg.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=cfg.hostname,
            ident="openvrm mail gateway",
            timeout=60,
            command_call_limit=200,
            tls_context=self.tls_context,
        )

    def stopping(self) -> bool:
        return self._stopping

    def _go_on(self) -> bool:
        if self._stopping:
            return False
        if self._wake is not None:
            self._wake.clear()  # what is due now is claimed by the next batch
        return True

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def start(self, sock: socket.socket | None = None) -> None:
        self.gateway.config()  # refuse to start unconfigured, with the message saying how to set up
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._wake = asyncio.Event()
        if sock is not None:
            self._server = await loop.create_server(self._factory, sock=sock)
        else:
            self._server = await loop.create_server(self._factory, self.host, self.port)
        self._delivery = asyncio.create_task(self._deliver_loop())
        self._wake.set()  # deliver what an earlier run left in the spool

    async def _deliver_loop(self) -> None:
        assert self._wake is not None  # noqa: S101
        while not self._stopping:
            try:
                wait = DELETE_DELAY if self._sent else self.poll_seconds
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except TimeoutError:
                if self._sent:
                    try:
                        await self._forget_sent()
                    except Exception as exc:  # noqa: BLE001 - kept, and tried again
                        log_event(log, "mail.delivery_failed", error=type(exc).__name__)
                    continue
                await self._drop_kept()  # idle: do not hold the downstream server's connection
                self._claim_due = True
            self._wake.clear()
            if self.stopping():
                return
            try:
                await self.deliver_once()
            except Exception as exc:  # noqa: BLE001 - the loop must survive a bad round
                log_event(log, "mail.delivery_failed", error=type(exc).__name__)

    async def deliver_once(self) -> SpoolReport:
        cfg = self.gateway.config()
        if cfg.downstream is None:
            return SpoolReport()
        target = (cfg.downstream, cfg.forward_to)
        keep = self._loop is not None and asyncio.get_running_loop() is self._loop
        transport = self._kept if keep and self._kept_for == target else None
        if transport is None:
            if keep:
                await self._drop_kept()
            transport = self.transport_factory(cfg.downstream, cfg.forward_to)
        try:
            report = SpoolReport()
            while self._handed and not self._stopping and keep:
                handed = [self._handed.popleft() for _ in range(min(len(self._handed), DELIVERY_BATCH))]
                report = _add(report, await self.spool.deliver_handed(transport, handed, sent_ids=self._sent))
                if len(self._sent) >= DELIVERY_BATCH:
                    await self._forget_sent()
                if not transport.connected:
                    break
            if self._claim_due or not keep:
                if keep:
                    self._claim_due = False
                # Bounded batches (after an outage the spool may hold thousands of large messages) that
                # go on while mail is due (mail accepted meanwhile joins the next one), each claimed in
                # the transaction that deletes what the batch before delivered.
                more = await self.spool.deliver(transport, limit=DELIVERY_BATCH, more=self._go_on)
                report = _add(report, more)
        except BaseException:
            self._kept = self._kept_for = None
            await transport.close()
            raise
        if keep and transport.connected:
            self._kept, self._kept_for = transport, target
        else:
            if self._kept is transport:
                self._kept = self._kept_for = None
            await transport.close()
        self.last_report = report
        self.delivered += report.sent
        if report.sent or report.retrying or report.failed:
            log_event(log, "mail.delivered", sent=report.sent, retrying=report.retrying, failed=report.failed)
        # No need to wake the loop again: the round went on until nothing was due (or the server was
        # unreachable, and then the idle poll tries again); mail accepted since wakes it.
        return report

    async def _forget_sent(self) -> None:
        sent, self._sent = self._sent, []
        try:
            await asyncio.to_thread(self.spool.forget, sent)
        except BaseException:
            self._sent = sent + self._sent  # tried again at the next turn of the loop
            raise

    async def _drop_kept(self) -> None:
        kept, self._kept, self._kept_for = self._kept, None, None
        if kept is not None:
            with contextlib.suppress(Exception):
                await kept.close()

    async def stop(self) -> None:
        """Stop taking mail; let a delivery round in progress finish (up to 20 s), then stop it.

        A round cut short loses nothing: a spooled message is deleted only after the server took it.
        """
        self._stopping = True
        if self._server is not None:
            self._server.close()
        if self._delivery is not None:
            self.wake()
            await asyncio.wait({self._delivery}, timeout=20)
            if not self._delivery.done():
                self._delivery.cancel()
                await asyncio.wait({self._delivery}, timeout=5)
        await self._drop_kept()
        if self._sent:
            with contextlib.suppress(Exception):
                await self._forget_sent()
        if self._handed:
            # Not sent: make them due now for whoever delivers next, rather than at the end of the lease.
            left, self._handed = list(self._handed), collections.deque()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.spool.release, left)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), timeout=5)

    async def serve_forever(self) -> None:
        """Serve until SIGINT or SIGTERM, then stop as :meth:`stop` says."""
        await self.start()
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, done.set)
        try:
            await done.wait()
        finally:
            await self.stop()


def _add(a: SpoolReport, b: SpoolReport) -> SpoolReport:
    return SpoolReport(a.sent + b.sent, a.retrying + b.retrying, a.failed + b.failed, [*a.errors, *b.errors])


@contextlib.contextmanager
def gateway_in_thread(server: GatewayServer) -> Iterator[tuple[str, int]]:
    """Run ``server`` on its own loop in a daemon thread (tests, benchmarks, `vrm serve --mail`)."""
    loop = asyncio.new_event_loop()
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP (docs/benchmarks.md).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((server.host, server.port))
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start(sock))
        except BaseException as exc:  # noqa: BLE001 - reported to the caller below
            failure.append(exc)
            started.set()
            return
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="openvrm-mail-gateway", daemon=True)
    thread.start()
    started.wait(30)
    if failure:
        sock.close()
        raise failure[0]
    host, port = sock.getsockname()[:2]
    try:
        yield host, port
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
        sock.close()
