"""Calls the bot places: routes, the dialog either side keeps, and the
messages of the INVITE transaction (RFC 3261 §9.1, §12, §13.2.2.4, §17.1.1.3)."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from bot.telephony.dialling import (
    InviteTransaction,
    OutboundRoute,
    dial_target,
    host_port,
    outbound_route,
    outcome_for,
)
from bot.telephony.dialog import (
    Dialog,
    ack_for_answer,
    ack_for_failure,
    answer_challenge,
    build_invite,
    cancel_for,
    uac_dialog,
    uas_dialog,
)
from bot.telephony.endpoint import TelephonySettings
from bot.telephony.register import Account
from bot.telephony.sip import SipMessage, response_to, via_branch

VIA = "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKfirst;rport"
ACCOUNT = Account(registrar="pbx.example.com:5070", user="201", password="secret")


def invite() -> SipMessage:
    return build_invite(
        "sip:600@pbx.example.com",
        "sip:201@pbx.example.com",
        call_id="call-1@10.0.0.2",
        tag="bottag",
        cseq=7,
        via=VIA,
        contact="<sip:201@10.0.0.2:5060>",
        body=b"v=0\r\n",
    )


def reply(status: int, reason: str, *headers: tuple[str, str]) -> SipMessage:
    message = response_to(invite(), status, reason, to_tag="fartag")
    for name, value in headers:
        message.add_header(name, value)
    return message


# -- where calls go ---------------------------------------------------------------


def route_of(settings: TelephonySettings, caller_id: str | None = None) -> OutboundRoute:
    route = outbound_route(settings, caller_id)
    assert route is not None
    return route


def test_dial_via_sends_calls_to_the_trunk_from_the_caller_id() -> None:
    settings = TelephonySettings(dial_via="trunk.example.com:5080", caller_id="+442079460000")
    route = route_of(settings)
    assert route.next_hop == ("trunk.example.com", 5080)
    assert route.request_uri("600") == "sip:600@trunk.example.com"
    assert route.from_uri == "sip:+442079460000@trunk.example.com"
    assert route.account is None  # no account at that host: a challenge refuses the call
    assert route_of(settings, caller_id="100").from_user == "100"
    assert route_of(TelephonySettings(dial_via="10.0.0.9")).from_user == "voicebot"


def test_dial_via_the_registrar_uses_that_accounts_credentials() -> None:
    route = route_of(TelephonySettings(dial_via="pbx.example.com", accounts=(ACCOUNT,)))
    assert route.account == ACCOUNT
    assert route.from_user == "201"


def test_without_dial_via_calls_go_through_the_first_accounts_registrar() -> None:
    other = Account(registrar="10.0.0.5", user="300")
    settings = TelephonySettings(accounts=(ACCOUNT, other), caller_id="ignored")
    route = route_of(settings)
    assert route.next_hop == ("pbx.example.com", 5070)
    assert route.request_uri("600") == "sip:600@pbx.example.com"
    assert route.from_user == "201"  # the extension the PBX knows
    assert route.account == ACCOUNT
    assert route_of(settings, caller_id="+4420").from_user == "+4420"


def test_no_route_without_dial_via_or_an_account() -> None:
    assert outbound_route(TelephonySettings()) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pbx", ("pbx", 5060)),
        ("10.0.0.1:5080", ("10.0.0.1", 5080)),
        ("[2001:db8::1]:5070", ("2001:db8::1", 5070)),
        ("[2001:db8::1]", ("2001:db8::1", 5060)),
        ("2001:db8::1", ("2001:db8::1", 5060)),
    ],
)
def test_host_port(text: str, expected: tuple[str, int]) -> None:
    assert host_port(text) == expected


@pytest.mark.parametrize("text", ["", ":5060", "pbx:port", "pbx:70000"])
def test_bad_host_port(text: str) -> None:
    with pytest.raises(ValueError, match="host\\[:port\\]"):
        host_port(text)


def test_what_can_be_dialled() -> None:
    assert dial_target(" +44 (20) 7946-0000 ") == "+442079460000"
    assert dial_target("600") == "600"
    assert dial_target("queue.sales") == "queue.sales"
    assert dial_target("*72#") == "*72%23"
    for bad in ("", "sip:600@pbx", "6 0 0 x", "600@pbx", "a;b"):
        with pytest.raises(ValueError, match="cannot dial"):
            dial_target(bad)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "answered"),
        (486, "busy"),
        (600, "busy"),
        (603, "rejected"),
        (403, "rejected"),
        (404, "rejected"),
        (480, "rejected"),
        (302, "rejected"),
        (500, "failed"),
        (503, "failed"),
    ],
)
def test_outcomes(status: int, outcome: str) -> None:
    assert outcome_for(status) == outcome


# -- the INVITE transaction ----------------------------------------------------------


def test_the_invite_offers_from_the_bot() -> None:
    message = invite()
    assert message.uri == "sip:600@pbx.example.com"
    assert message.header("From") == "<sip:201@pbx.example.com>;tag=bottag"
    assert message.header("To") == "<sip:600@pbx.example.com>"
    assert message.cseq == (7, "INVITE")
    assert message.header("Content-Type") == "application/sdp"
    assert "INVITE" in (message.header("Allow") or "")


def test_a_failure_is_acknowledged_in_the_invites_transaction() -> None:
    sent = invite()
    sent.add_header("Route", "<sip:proxy.example.com;lr>")
    ack = ack_for_failure(sent, reply(486, "Busy Here"))
    assert (ack.method, ack.uri) == ("ACK", sent.uri)
    assert via_branch(ack) == "z9hG4bKfirst"
    assert ack.cseq == (7, "ACK")
    assert ack.header("To") == "<sip:600@pbx.example.com>;tag=fartag"
    assert ack.header("From") == sent.header("From")
    assert ack.header_all("Route") == ["<sip:proxy.example.com;lr>"]


def test_cancel_shares_the_invites_branch_and_has_no_to_tag() -> None:
    cancel = cancel_for(invite())
    assert (cancel.method, cancel.uri) == ("CANCEL", "sip:600@pbx.example.com")
    assert via_branch(cancel) == "z9hG4bKfirst"
    assert cancel.cseq == (7, "CANCEL")
    assert cancel.header("To") == "<sip:600@pbx.example.com>"


def _digest(realm: str, nonce: str) -> str:
    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"201:{realm}:secret")
    return md5(f"{ha1}:{nonce}:{md5('INVITE:sip:600@pbx.example.com')}")


def test_a_proxy_challenge_is_answered_once_with_a_new_transaction() -> None:
    challenge = reply(
        407, "Proxy Authentication Required", ("Proxy-Authenticate", 'Digest realm="r", nonce="n1"')
    )
    again = answer_challenge(invite(), challenge, ACCOUNT, "SIP/2.0/UDP h;branch=z9hG4bKsecond", 1)
    assert again is not None
    assert via_branch(again) == "z9hG4bKsecond"
    assert again.cseq == (8, "INVITE")
    assert again.call_id == "call-1@10.0.0.2"
    assert again.header("From") == "<sip:201@pbx.example.com>;tag=bottag"
    assert again.body == b"v=0\r\n"
    credentials = again.header("Proxy-Authorization") or ""
    assert f'response="{_digest("r", "n1")}"' in credentials
    assert 'username="201"' in credentials
    # The same challenge again (not stale): the password is wrong.
    assert answer_challenge(again, challenge, ACCOUNT, VIA, 2) is None
    stale = reply(
        407, "Proxy Authentication Required",
        ("Proxy-Authenticate", 'Digest realm="r", nonce="n2", stale=true'),
    )  # fmt: skip
    assert answer_challenge(again, stale, ACCOUNT, VIA, 2) is not None


def test_a_far_end_challenge_after_the_proxys_keeps_both_credentials() -> None:
    proxy = reply(407, "Proxy", ("Proxy-Authenticate", 'Digest realm="p", nonce="n1"'))
    far_end = reply(401, "Unauthorized", ("WWW-Authenticate", 'Digest realm="f", nonce="n2"'))
    once = answer_challenge(invite(), proxy, ACCOUNT, VIA, 1)
    assert once is not None
    twice = answer_challenge(once, far_end, ACCOUNT, VIA, 2)
    assert twice is not None
    assert twice.cseq == (9, "INVITE")
    assert twice.header("Proxy-Authorization") == once.header("Proxy-Authorization")
    assert 'realm="f"' in (twice.header("Authorization") or "")


def test_a_challenge_without_an_account_or_a_challenge_header_refuses_the_call() -> None:
    challenge = reply(401, "Unauthorized", ("WWW-Authenticate", 'Digest realm="r", nonce="n"'))
    assert answer_challenge(invite(), challenge, None, VIA, 1) is None
    assert answer_challenge(invite(), reply(401, "Unauthorized"), ACCOUNT, VIA, 1) is None


def test_every_copy_of_a_final_response_gets_an_ack_and_a_200s_ack_is_repeated() -> None:
    async def scenario() -> list[SipMessage]:
        sent: list[SipMessage] = []
        transaction = InviteTransaction(lambda m, _addr: sent.append(m), invite(), ("h", 5060))
        transaction.on_response(reply(180, "Ringing"))
        assert transaction.proceeding.is_set() and not transaction.final.done()
        busy = reply(486, "Busy Here")
        transaction.on_response(busy)
        transaction.on_response(busy)  # the ACK was lost: the far end repeats it
        assert transaction.final.result() is busy

        answered = InviteTransaction(lambda m, _addr: sent.append(m), invite(), ("h", 5060))
        ok = reply(200, "OK", ("Contact", "<sip:far@10.0.0.9:5062>"))
        answered.on_response(ok)
        ack = ack_for_answer(uac_dialog(invite(), ok), invite(), "SIP/2.0/UDP h;branch=z9hG4bKack")
        answered.acknowledge(ack, ("10.0.0.9", 5062))
        answered.on_response(ok)  # the 200 again
        return sent

    sent = asyncio.run(scenario())
    assert [(m.method, m.cseq) for m in sent] == [("ACK", (7, "ACK"))] * 4
    assert [via_branch(m) for m in sent] == ["z9hG4bKfirst"] * 2 + ["z9hG4bKack"] * 2


def test_the_kernels_unreachable_report_fails_an_unanswered_invite() -> None:
    async def scenario() -> tuple[bool, bool]:
        transaction = InviteTransaction(lambda _m, _a: None, invite(), ("10.0.0.1", 5060))
        transaction.destination_unreachable(("10.0.0.7", 5060))  # somewhere else
        elsewhere = transaction.final.done()
        transaction.destination_unreachable(("10.0.0.1", 5060))
        return elsewhere, transaction.final.done() and transaction.unreachable

    assert asyncio.run(scenario()) == (False, True)


# -- the dialog, whichever side placed the call ----------------------------------------


def test_the_bots_requests_in_a_call_it_placed() -> None:
    ok = reply(
        200,
        "OK",
        ("Contact", "<sip:far@10.0.0.9:5062;transport=udp>"),
        ("Record-Route", "<sip:p1.example.com;lr>"),
        ("Record-Route", "<sip:p2.example.com:5070;lr>"),
    )
    dialog = uac_dialog(invite(), ok)
    bye = dialog.request("BYE", 8, "SIP/2.0/UDP h;branch=z9hG4bKbye")
    assert bye.uri == "sip:far@10.0.0.9:5062;transport=udp"
    assert bye.header("From") == "<sip:201@pbx.example.com>;tag=bottag"
    assert bye.header("To") == "<sip:600@pbx.example.com>;tag=fartag"
    assert bye.cseq == (8, "BYE")
    # The route set is the 200's Record-Route reversed; requests go to its first hop.
    assert bye.header_all("Route") == ["<sip:p2.example.com:5070;lr>", "<sip:p1.example.com;lr>"]
    assert dialog.next_hop == ("p2.example.com", 5070)
    assert Dialog("c", "a", "b", "sip:x@10.0.0.3:5999").next_hop == ("10.0.0.3", 5999)


def test_the_ack_of_a_200_goes_to_the_contact_with_the_invites_credentials() -> None:
    sent = invite()
    sent.add_header("Proxy-Authorization", 'Digest username="201"')
    ok = reply(200, "OK", ("Contact", "<sip:far@10.0.0.9:5062>"))
    ack = ack_for_answer(uac_dialog(sent, ok), sent, "SIP/2.0/UDP h;branch=z9hG4bKack")
    assert (ack.method, ack.uri, ack.cseq) == ("ACK", "sip:far@10.0.0.9:5062", (7, "ACK"))
    assert via_branch(ack) == "z9hG4bKack"  # a transaction of its own
    assert ack.header("To") == "<sip:600@pbx.example.com>;tag=fartag"
    assert ack.header("Proxy-Authorization") == 'Digest username="201"'


def test_the_bots_requests_in_a_call_it_answered() -> None:
    incoming = SipMessage.parse(
        b"INVITE sip:bot@10.0.0.2 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKin\r\n"
        b"Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
        b"From: <sip:+4420@pbx>;tag=caller\r\n"
        b"To: <sip:hotline@10.0.0.2>\r\n"
        b"Call-ID: in-1\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Contact: <sip:alice@10.0.0.1:5062>\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    bye = uas_dialog(incoming, "bot").request("BYE", 2, VIA)
    assert bye.uri == "sip:alice@10.0.0.1:5062"
    assert bye.header("From") == "<sip:hotline@10.0.0.2>;tag=bot"
    assert bye.header("To") == "<sip:+4420@pbx>;tag=caller"
    assert bye.header_all("Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
