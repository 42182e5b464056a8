"""SPF, DKIM and DMARC through pyspf, dkimpy and authheaders, against a fixed zone; and the leak rules."""

from __future__ import annotations

from typing import Any

import spf

from openvrm.mail.analysis import judge_sender
from openvrm.mail.auth import AuthResults, DkimSignature, ZoneResolver, authenticate, org_domain
from tests.mail.support import message, zone_for

ZONE = zone_for("shop.example")


def test_a_signed_message_from_the_vendors_server_passes_everything() -> None:
    raw = message(sender="billing@shop.example", to="a@mail.example")
    r = authenticate(ZONE, raw, ip="127.0.0.1", helo="mx.shop.example", mail_from="bounce@shop.example")
    assert (r.spf, r.dmarc, r.dmarc_policy, r.header_from_domain) == (
        "pass",
        "pass",
        "reject",
        "shop.example",
    )
    assert r.dkim == (DkimSignature("shop.example", "s1", "pass"),)
    assert "dkim=pass header.d=shop.example" in r.header_value("mail.example")


def test_an_altered_body_fails_dkim_and_another_server_fails_spf() -> None:
    raw = message(sender="billing@shop.example", to="a@mail.example").replace(b"thanks", b"THANKS")
    r = authenticate(ZONE, raw, ip="198.51.100.7", helo="x", mail_from="bounce@shop.example")
    assert r.dkim[0].result == "fail" and r.spf == "fail" and r.dmarc == "fail"


def test_dmarc_relaxed_alignment_through_spf_for_a_subdomain() -> None:
    raw = message(sender="billing@eu.shop.example", to="a@mail.example", sign=False)
    r = authenticate(ZONE, raw, ip="127.0.0.1", helo="mx", mail_from="bounce@shop.example")
    assert (r.spf, r.dmarc, r.header_from_domain) == ("pass", "pass", "eu.shop.example")


def test_a_spoofed_from_fails_dmarc() -> None:
    raw = message(sender="billing@shop.example", to="a@mail.example", sign=False)
    r = authenticate(ZONE, raw, ip="10.9.9.9", helo="x", mail_from="someone@spoofer.example")
    assert (r.spf, r.dkim, r.dmarc) == ("none", (), "fail")


def test_dns_failure_is_a_temperror_not_an_exception() -> None:
    class Down(ZoneResolver):
        def lookup(self, name: str, rtype: str) -> list[Any]:
            raise spf.TempError("DNS Timeout")

    raw = message(sender="billing@shop.example", to="a@mail.example")
    r = authenticate(Down(), raw, ip="127.0.0.1", helo="mx", mail_from="bounce@shop.example")
    assert r.spf == "temperror" and r.dkim[0].result == "temperror"


def test_garbage_is_not_an_exception() -> None:
    r = authenticate(ZONE, b"\xff\xfe not a message \x00", ip=None, helo="", mail_from="")
    assert r.spf == "none" and r.dkim == ()


def test_organisational_domains_follow_the_public_suffix_list() -> None:
    assert org_domain("mail.shop.co.uk") == "shop.co.uk"
    assert org_domain("a.b.shop.example") == "shop.example"
    assert org_domain("someone.github.io") == "someone.github.io"  # a private suffix


def _auth(**kw: Any) -> AuthResults:
    return AuthResults(**{"spf": "none", "spf_domain": None, **kw})


def test_leak_rules() -> None:
    vendor = ["shop.example"]
    signed = _auth(dkim=(DkimSignature("mail.shop.example", "s", "pass"),))
    assert not judge_sender(
        vendor, "news@other.example", signed, "b@x.example"
    ).leaked  # signed by the vendor
    assert not judge_sender(vendor, "billing@shop.example", _auth(), "b@shop.example").leaked  # unsigned
    spoof = judge_sender(vendor, "billing@shop.example", _auth(dmarc="fail"), "x@spoofer.example")
    assert spoof.leaked and spoof.reached == "shop.example" and "fails authentication" in spoof.reason
    other = judge_sender(vendor, "deals@mail.broker.co.uk", _auth(), "b@broker.co.uk")
    assert other.leaked and other.reached == "broker.co.uk"
    assert not judge_sender(vendor, "", _auth(), "").leaked  # a bounce
    learned = judge_sender([], "hello@shop.example", signed, "b@shop.example")
    assert not learned.leaked and learned.learned == "shop.example"  # a vendor with no domain learns it
    unsure = judge_sender([], "hello@new.example", _auth(), "b@new.example")
    assert not unsure.leaked and unsure.learned is None  # but not from an unauthenticated sender
    first = judge_sender(
        [], "hello@new.example", _auth(spf="pass", spf_domain="new.example"), "b@new.example"
    )
    assert first.learned == "new.example" and not first.leaked
