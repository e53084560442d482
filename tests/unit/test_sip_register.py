"""Registered lines' settings and the SIP details of registration and transfer."""

from __future__ import annotations

import pytest

from bot.call import LineInfo
from bot.telephony.endpoint import PhoneCall, via_branch
from bot.telephony.register import (
    Account,
    AccountError,
    granted_expiry,
    parse_accounts,
    refresh_after,
)
from bot.telephony.sdp import Codec, parse_offer
from bot.telephony.sip import SipMessage
from bot.telephony.transfer import sipfrag_status, transfer_uri

OFFER = (
    b"v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\n"
    b"t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
)


def test_one_extension_and_a_numbered_range() -> None:
    accounts = parse_accounts(
        [
            {"registrar": "pbx.example.com", "user": "200", "password": "a"},
            {"registrar": "10.0.0.5:5070", "users": "0201-0203", "password_env": "PW"},
        ],
        {"PW": "from-env"},
    )
    assert [a.user for a in accounts] == ["200", "0201", "0202", "0203"]
    assert accounts[0].registrar_host_port == ("pbx.example.com", 5060)
    assert accounts[0].aor == "sip:200@pbx.example.com"
    assert accounts[1].registrar_host_port == ("10.0.0.5", 5070)
    assert {a.password for a in accounts[1:]} == {"from-env"}
    assert accounts[1].expires == 600


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"user": "200"}, "registrar (host or host:port) is required"),
        ({"registrar": "pbx", "user": "200", "users": "1-2"}, "either user"),
        ({"registrar": "pbx"}, "either user"),
        ({"registrar": "pbx", "users": "9-3"}, "a range such as 201-208"),
        ({"registrar": "pbx", "users": "1-5000"}, "at most 1000"),
        ({"registrar": "pbx", "user": "a b"}, "bad user"),
        ({"registrar": "pbx", "user": "200", "expires": 5}, "at least 10 seconds"),
        ({"registrar": "pbx", "user": "200", "password_env": "NOPE"}, "NOPE is not set"),
        ({"registrar": "pbx", "user": "200", "colour": "red"}, "unknown key(s) colour"),
    ],
)
def test_bad_accounts_are_named(entry: dict, message: str) -> None:
    with pytest.raises(AccountError, match="telephony.accounts\\[1\\]") as error:
        parse_accounts([entry], {})
    assert message in str(error.value)


def test_refresh_comes_well_before_expiry() -> None:
    assert refresh_after(4) == 2
    assert refresh_after(120) == 60
    assert refresh_after(3600) == 3570


def _reply(*headers: tuple[str, str]) -> SipMessage:
    return SipMessage(status=200, reason="OK", headers=list(headers))


def test_the_granted_expiry_is_our_contacts() -> None:
    sent = SipMessage(
        method="REGISTER", uri="sip:pbx", headers=[("Contact", "<sip:201@10.0.0.9:5060>")]
    )
    reply = _reply(
        ("Contact", "<sip:201@10.0.0.7:5060>;expires=900, <sip:201@10.0.0.9:5060>;expires=300"),
        ("Expires", "600"),
    )
    assert granted_expiry(reply, sent, 3600) == 300
    assert granted_expiry(_reply(("Expires", "120")), sent, 3600) == 120
    assert granted_expiry(_reply(), sent, 3600) == 3600


def test_sipfrag_and_via_branch() -> None:
    assert sipfrag_status(b"SIP/2.0 200 OK\r\n") == 200
    assert sipfrag_status(b"SIP/2.0 100 Trying") == 100
    assert sipfrag_status(b"garbage") is None
    message = SipMessage(
        method="OPTIONS",
        uri="sip:x",
        headers=[("Via", "SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKabc")],
    )
    assert via_branch(message) == "z9hG4bKabc"


def test_a_transfer_target_is_a_uri_or_a_number_at_the_pbx() -> None:
    invite = SipMessage(method="INVITE", uri="sip:bot@10.0.0.9", headers=[])
    call = PhoneCall(
        call_id="c",
        line=1,
        invite=invite,
        peer=("10.0.0.5", 5060),
        local_tag="t",
        info=LineInfo(line=1),
        codec=Codec("PCMU", 0, 8000, 8000),
        offer=parse_offer(OFFER),
    )
    assert transfer_uri("600", call) == "sip:600@10.0.0.5"
    assert transfer_uri("sip:queue@pbx.example.com", call) == "sip:queue@pbx.example.com"
    assert Account(registrar="[::1]:5070", user="1").registrar_host_port == ("::1", 5070)
