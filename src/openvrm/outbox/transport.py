"""How outbox messages leave: a small transport interface and its SMTP adapter (aiosmtplib).

A transport opens once per delivery run and sends messages over that connection. Every failure (the
server refuses a recipient or the data, the connection drops or is refused, TLS or login fails) is a
:class:`DeliveryFailed` with the server's words; the outbox decides whether to retry.
"""

from __future__ import annotations

import ssl
from email.message import Message
from typing import Protocol

import aiosmtplib

from openvrm.outbox.settings import MailSettings


class DeliveryFailed(Exception):  # noqa: N818 - an outcome the outbox records, not a crash
    """A message (or the connection) was refused; ``str()`` is the reason, kept on the message."""


class Transport(Protocol):
    @property
    def connected(self) -> bool: ...

    async def open(self) -> None: ...

    async def send(self, message: Message | bytes, sender: str, recipients: list[str]) -> None: ...

    async def close(self) -> None: ...


class SmtpTransport:
    """The person's SMTP server, one connection per delivery run (reopened after a dropped one)."""

    def __init__(self, settings: MailSettings, *, timeout: float = 60) -> None:
        self.settings = settings
        self.timeout = timeout
        self._smtp: aiosmtplib.SMTP | None = None

    @property
    def connected(self) -> bool:
        return self._smtp is not None and self._smtp.is_connected

    async def open(self) -> None:
        st = self.settings
        if self.connected:
            return
        context = ssl.create_default_context()
        if not st.validate_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        smtp = aiosmtplib.SMTP(
            hostname=st.host,
            port=st.port,
            use_tls=st.tls == "tls",
            start_tls=True if st.tls == "starttls" else False,
            tls_context=context if st.tls != "none" else None,
            timeout=self.timeout,
            local_hostname="openvrm.localhost",
        )
        try:
            await smtp.connect()
            if st.username:
                await smtp.login(st.username, st.password or "")
        except (aiosmtplib.SMTPException, OSError) as exc:
            await _quiet_close(smtp)
            raise DeliveryFailed(f"cannot reach {st.host}:{st.port}: {_describe(exc)}") from None
        self._smtp = smtp

    async def send(self, message: Message | bytes, sender: str, recipients: list[str]) -> None:
        """Send a message (or its bytes, as the mail gateway has them) to ``recipients``."""
        if not self.connected:
            await self.open()
        assert self._smtp is not None  # noqa: S101 - open() either set it or raised
        try:
            if isinstance(message, bytes):
                refused, _ = await self._smtp.sendmail(sender, recipients, message)
            else:
                refused, _ = await self._smtp.send_message(message, sender=sender, recipients=recipients)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise DeliveryFailed(
                "the server refused "
                + "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            ) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            if not self._smtp.is_connected:
                self._smtp = None
            raise DeliveryFailed(_describe(exc)) from None
        if refused and len(refused) == len(recipients):
            raise DeliveryFailed("the server refused every recipient")

    async def close(self) -> None:
        if self._smtp is not None:
            await _quiet_close(self._smtp)
            self._smtp = None


async def _quiet_close(smtp: aiosmtplib.SMTP) -> None:
    try:
        if smtp.is_connected:
            await smtp.quit()
    except (aiosmtplib.SMTPException, OSError):
        smtp.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{exc.code} {exc.message}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
