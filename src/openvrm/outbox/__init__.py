"""The durable outbox: messages written with the change that causes them, delivered with retries."""

from openvrm.outbox.service import Attachment, DeliveryReport, Outbox, OutboxEntry
from openvrm.outbox.settings import MailSettings, clean_mail_settings, load_mail_settings, save_mail_settings
from openvrm.outbox.transport import DeliveryFailed, SmtpTransport, Transport

__all__ = [
    "Attachment",
    "DeliveryFailed",
    "DeliveryReport",
    "MailSettings",
    "Outbox",
    "OutboxEntry",
    "SmtpTransport",
    "Transport",
    "clean_mail_settings",
    "load_mail_settings",
    "save_mail_settings",
]
