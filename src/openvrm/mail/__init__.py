"""The relationship mailbox: one e-mail alias per vendor, the SMTP gateway's core, and filed messages.

The parts, each usable alone:

- :mod:`openvrm.mail.keys`: the mail key (what the gateway holds) and address lookups;
- :mod:`openvrm.mail.routing`: gateway settings and aliases, readable with the mail key alone;
- :mod:`openvrm.mail.auth`: SPF, DKIM and DMARC through dkimpy, pyspf and authheaders;
- :mod:`openvrm.mail.analysis`: what a message is (promotion, transactional, bills, leaks);
- :mod:`openvrm.mail.gateway`: the gateway's decisions and its durable spool (no SMTP server here);
- :mod:`openvrm.mail.service`: the person's side, with the vault unlocked (aliases, filing, sending).

The SMTP server itself (aiosmtpd) is an adapter in :mod:`openvrm.server.smtp_gateway`.
"""
