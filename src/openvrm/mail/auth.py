"""SPF, DKIM and DMARC for a received message, through maintained libraries.

pyspf evaluates SPF, dkimpy verifies each DKIM signature, authheaders applies DMARC (alignment and the
published policy, with the Public Suffix List for organisational domains). All three ask DNS through one
small :class:`Resolver` port: :class:`DnsResolver` (dnspython, short timeouts) in service, and
:class:`ZoneResolver`, a fixed zone, for tests and the demo, which have no Internet. A DNS failure is a
``temperror`` on the result, never an exception out of the gateway.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import authheaders as _authheaders
import authheaders.dmarc_lookup as _dmarc_lookup
import dkim
import dns.exception
import dns.resolver
import spf
from authheaders import check_dmarc
from authres import DKIMAuthenticationResult, SPFAuthenticationResult
from publicsuffixlist import PublicSuffixList

# dkimpy logs every failed signature at ERROR level with the message's headers: keep it quiet.
logging.getLogger("dkimpy").setLevel(logging.CRITICAL)

RecordType = str  # "TXT" | "A" | "AAAA" | "MX"


class Resolver(Protocol):
    def lookup(self, name: str, rtype: RecordType) -> list[Any]:
        """Answers in pyspf's shapes: TXT → tuples of byte strings, A/AAAA → str, MX → (pref, host)."""
        ...


class DnsResolver:
    """The real resolver: the system's name servers through dnspython, 3 s a question."""

    def __init__(self, lifetime: float = 3.0) -> None:
        self._r = dns.resolver.Resolver()
        self._r.lifetime = lifetime

    def lookup(self, name: str, rtype: RecordType) -> list[Any]:
        try:
            answer = self._r.resolve(name, rtype, raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (
            dns.exception.Timeout,
            dns.resolver.NoNameservers,
            dns.resolver.NoResolverConfiguration,
        ) as exc:
            raise spf.TempError(f"DNS {type(exc).__name__}") from None
        out: list[Any] = []
        for r in answer:
            if rtype == "TXT":
                out.append(tuple(r.strings))
            elif rtype in ("A", "AAAA"):
                out.append(r.address)
            elif rtype == "MX":
                out.append((r.preference, r.exchange.to_text(omit_final_dot=True)))
        return out


class ZoneResolver:
    """A fixed zone: ``{("example.org", "TXT"): ["v=spf1 ip4:192.0.2.1 -all"], ...}``."""

    def __init__(self, records: Mapping[tuple[str, str], Sequence[Any]] | None = None) -> None:
        self.records: dict[tuple[str, str], list[Any]] = {}
        for (name, rtype), values in (records or {}).items():
            for v in values:
                self.add(name, rtype, v)

    def add(self, name: str, rtype: str, value: Any) -> None:
        key = (name.lower().rstrip("."), rtype.upper())
        if key[1] == "TXT" and isinstance(value, str):
            raw = value.encode()
            value = tuple(raw[i : i + 255] for i in range(0, len(raw), 255)) or (b"",)
        self.records.setdefault(key, []).append(value)

    def lookup(self, name: str, rtype: RecordType) -> list[Any]:
        return list(self.records.get((name.lower().rstrip("."), rtype.upper()), ()))

    def to_json(self) -> dict[str, list[Any]]:
        """``{"name TYPE": [value, ...]}``, TXT as text: the form `vrm mail serve --dns-zone` reads."""
        out: dict[str, list[Any]] = {}
        for (name, rtype), values in self.records.items():
            out[f"{name} {rtype}"] = [
                b"".join(v).decode("utf-8", "replace") if rtype == "TXT" else v for v in values
            ]
        return out

    @classmethod
    def from_json(cls, data: Any) -> ZoneResolver:
        if not isinstance(data, dict):
            raise ValueError('a zone is an object of "name TYPE": [values]')
        zone = cls()
        for key, values in data.items():
            name, _, rtype = str(key).partition(" ")
            if not name or rtype.upper() not in ("TXT", "A", "AAAA", "MX") or not isinstance(values, list):
                raise ValueError(f"bad zone entry {str(key)[:80]!r}")
            for v in values:
                zone.add(name, rtype, tuple(v) if rtype.upper() == "MX" else v)
        return zone


class _SpfQuery(spf.query):  # type: ignore[misc]
    """pyspf's evaluator with its DNS questions sent to our resolver."""

    def __init__(self, resolver: Resolver, **kw: Any) -> None:
        super().__init__(**kw)
        self._resolver = resolver

    def dns(self, name: Any, qtype: str, cnames: Any = None, ignore_void: bool = False) -> list[Any]:
        name = str(name).rstrip(".").lower()
        if not name:
            raise spf.PermError("empty DNS name")
        result = self._resolver.lookup(name, qtype)
        if not result and not ignore_void:
            self.void_lookups += 1
            if self.void_lookups > spf.MAX_VOID_LOOKUPS:
                raise spf.PermError(f"Void lookup limit of {spf.MAX_VOID_LOOKUPS} exceeded")
        return result


def new_dkim_key() -> tuple[bytes, str]:
    """A new RSA-2048 DKIM key: (private key PEM, public key base64 for the ``p=`` of its DNS record).

    The gateway only verifies; this serves the demo, the tests and the benchmark, which sign their mail.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = k.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    der = k.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, base64.b64encode(der).decode()


def _txt_joined(resolver: Resolver, name: str) -> bytes | None:
    answers = resolver.lookup(name, "TXT")
    return b"".join(answers[0]) if answers else None


@dataclass(frozen=True)
class DkimSignature:
    domain: str
    selector: str
    result: str  # pass | fail | temperror | permerror

    def to_json(self) -> dict[str, str]:
        return {"domain": self.domain, "selector": self.selector, "result": self.result}


@dataclass(frozen=True)
class AuthResults:
    spf: str  # pass | fail | softfail | neutral | none | temperror | permerror
    spf_domain: str | None
    dkim: tuple[DkimSignature, ...] = ()
    dmarc: str = "none"
    dmarc_policy: str | None = None
    header_from_domain: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def dkim_pass_domains(self) -> list[str]:
        return [d.domain for d in self.dkim if d.result == "pass"]

    def to_json(self) -> dict[str, Any]:
        return {
            "spf": self.spf,
            "spf_domain": self.spf_domain,
            "dkim": [d.to_json() for d in self.dkim],
            "dmarc": self.dmarc,
            "dmarc_policy": self.dmarc_policy,
            "header_from_domain": self.header_from_domain,
        }

    def header_value(self, authserv_id: str) -> str:
        """An RFC 8601 Authentication-Results value for the forwarded copy."""
        parts = [f"spf={self.spf}" + (f" smtp.mailfrom={self.spf_domain}" if self.spf_domain else "")]
        parts += [f"dkim={d.result} header.d={d.domain} header.s={d.selector}" for d in self.dkim] or [
            "dkim=none"
        ]
        dmarc = f"dmarc={self.dmarc}"
        if self.header_from_domain:
            dmarc += f" header.from={self.header_from_domain}"
        parts.append(dmarc)
        return f"{authserv_id}; " + "; ".join(parts)


_PSL = PublicSuffixList()


def org_domain(domain: str) -> str:
    """The organisational domain (``mail.shop.co.uk`` → ``shop.co.uk``), by the Public Suffix List."""
    d = domain.lower().rstrip(".")
    try:
        return str(_PSL.privatesuffix(d) or d)
    except Exception:  # noqa: BLE001 - a malformed name is its own organisation
        return d


# authheaders finds organisational domains by re-reading its bundled (2019) Public Suffix List on every
# call, four times per message: about 200 ms. Its DMARC code looks the function up by name, so it is
# pointed at ours, which keeps one parsed copy of the maintained list (publicsuffixlist) per process.
def _org_domain_or_none(domain: str | None) -> str | None:
    return org_domain(domain) if domain else None


_authheaders.get_org_domain = _org_domain_or_none
_dmarc_lookup.get_org_domain = _org_domain_or_none


def check_spf(resolver: Resolver, *, ip: str | None, mail_from: str, helo: str) -> tuple[str, str | None]:
    if not ip:
        return "none", None
    sender = mail_from or f"postmaster@{helo}"
    domain = sender.rpartition("@")[2].lower() or None
    try:
        result, _code, _why = _SpfQuery(resolver, i=ip, s=sender, h=helo or "unknown", timeout=10).check()
    except spf.TempError:
        return "temperror", domain
    except (spf.PermError, ValueError):
        return "permerror", domain
    return str(result or "none"), domain


def check_dkim(resolver: Resolver, raw: bytes) -> tuple[DkimSignature, ...]:
    def dnsfunc(name: bytes | str, timeout: int = 5) -> bytes | None:
        n = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        return _txt_joined(resolver, n.rstrip("."))

    try:
        d = dkim.DKIM(raw, minkey=1024)
        count = sum(1 for name, _v in d.headers if name.lower() == b"dkim-signature")
    except Exception:  # noqa: BLE001 - an unparsable message has no verifiable signature
        return ()
    out = []
    for idx in range(min(count, 5)):  # a few signatures are normal; many are abuse
        result = "fail"
        try:
            result = "pass" if d.verify(idx=idx, dnsfunc=dnsfunc) else "fail"
        except dkim.DnsTimeoutError:
            result = "temperror"
        except spf.TempError:
            result = "temperror"
        except dkim.ValidationError:
            result = "fail"
        except dkim.DKIMException:
            result = "permerror"
        except Exception:  # noqa: BLE001 - dkimpy raises plain errors on hostile input
            result = "permerror"
        fields = d.signature_fields or {}
        out.append(
            DkimSignature(
                # Bounded: the values come from the sender and end up in headers and the sealed inbox.
                domain=fields.get(b"d", b"")[:253].decode("ascii", "replace").lower(),
                selector=fields.get(b"s", b"")[:63].decode("ascii", "replace"),
                result=result,
            )
        )
    return tuple(out)


def authenticate(resolver: Resolver, raw: bytes, *, ip: str | None, helo: str, mail_from: str) -> AuthResults:
    """SPF for the connection, DKIM for each signature, DMARC for the From domain."""
    spf_result, spf_domain = check_spf(resolver, ip=ip, mail_from=mail_from, helo=helo)
    signatures = check_dkim(resolver, raw)
    dmarc_result, policy, from_domain = "none", None, None

    def dmarc_dns(name: str) -> str | None:
        value = _txt_joined(resolver, name)
        return value.decode("ascii", "replace") if value is not None else None

    try:
        # authheaders takes the domain from a whole address here.
        spf_ar = SPFAuthenticationResult(result=spf_result, smtp_mailfrom=mail_from or f"postmaster@{helo}")
        passing = [s for s in signatures if s.result == "pass"]
        best = passing[0] if passing else (signatures[0] if signatures else None)
        dkim_ar = (
            DKIMAuthenticationResult(result=best.result, header_d=best.domain, header_i="@" + best.domain)
            if best
            else None
        )
        res = check_dmarc(raw, spf_result=spf_ar, dkim_result=dkim_ar, dnsfunc=dmarc_dns)
        dmarc_result = str(res.result or "none")
        policy = getattr(res, "policy", None)
        from_domain = getattr(res, "header_from", None)
    except spf.TempError:
        dmarc_result = "temperror"
    except Exception:  # noqa: BLE001 - a hostile From header must not stop the message
        dmarc_result = "permerror"
    return AuthResults(
        spf=spf_result,
        spf_domain=spf_domain,
        dkim=signatures,
        dmarc=dmarc_result,
        dmarc_policy=str(policy) if policy else None,
        header_from_domain=str(from_domain) if from_domain else None,
    )
