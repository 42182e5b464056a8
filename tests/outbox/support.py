"""A real SMTP server on loopback (aiosmtpd) that records what it accepted, by Message-ID."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from openvrm.outbox.settings import clean_mail_settings, save_mail_settings
from openvrm.vault.core import UnlockedVault


class Sink:
    """Accepts mail; refuses recipients in ``refuse``; can hold message number ``hold_at`` until released."""

    def __init__(self, refuse: set[str] | None = None, hold_at: int | None = None) -> None:
        self.refuse = refuse or set()
        self.hold_at = hold_at
        self.messages: list[Message] = []
        self.held = threading.Event()  # set when the held message has arrived
        self.release = threading.Event()
        self.lock = threading.Lock()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:  # noqa: N802
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        msg = message_from_bytes(envelope.content)
        with self.lock:
            self.messages.append(msg)
            count = len(self.messages)
        if self.hold_at is not None and count == self.hold_at:
            self.held.set()
            # The server has the message; the client is killed before it reads the 250.
            while not self.release.wait(0.05):
                pass
        return "250 Message accepted"

    def ids(self) -> Counter[str]:
        with self.lock:
            return Counter(str(m["Message-ID"]) for m in self.messages)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def smtp_sink(**kw: Any) -> Iterator[tuple[Sink, int]]:
    sink = Sink(**kw)
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        sink.release.set()
        controller.stop()


def use_sink(uv: UnlockedVault, port: int) -> None:
    save_mail_settings(
        uv, clean_mail_settings(host="127.0.0.1", port=port, tls="none", from_addr="anna@example.org")
    )
