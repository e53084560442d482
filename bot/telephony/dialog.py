"""A call's SIP dialog: ``PhoneCall``, one call as the endpoint sees it, and
``Dialog``, what the bot's requests inside the call carry (RFC 3261 §12),
whichever side placed it; with the requests of the INVITE transaction of a
call the bot places (the INVITE, its ACKs, CANCEL, the answer to a
challenge). Nothing here sends anything: the endpoint and ``dialling.py`` do.
They live apart from the endpoint so that ``dialling.py``, which the endpoint
uses, can build calls and dialogs without importing it.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.call import LineInfo
from bot.telephony.media import RtpSession
from bot.telephony.sdp import Codec, Offer
from bot.telephony.sip import (
    ALLOW,
    SipMessage,
    digest_authorization,
    parse_name_addr,
    request,
    uri_host_port,
)

if TYPE_CHECKING:
    from bot.telephony.register import Account


@dataclass
class PhoneCall:
    """One SIP dialog and its media, as the endpoint sees it.

    ``invite`` set the dialog up: the far end's on a call the bot answered,
    the bot's own on one it placed (``outbound``). ``offer`` is the far end's
    SDP: its offer, or its answer to the bot's. ``peer`` is where the bot's
    requests in the dialog go.
    """

    call_id: str
    line: int
    invite: SipMessage
    peer: tuple[str, int]
    local_tag: str
    info: LineInfo
    codec: Codec
    offer: Offer | None
    outbound: bool = False
    # The dialog of a placed call (an answered call's is read from its INVITE).
    dialog: Dialog | None = None
    rtp: RtpSession | None = None
    answered: bool = False
    confirmed: bool = False
    caller_gone: bool = False
    bot_gone: bool = False
    cseq: int = field(default_factory=lambda: secrets.randbelow(10_000) + 1)
    sdp_version: int = 1
    last_response: SipMessage | None = None
    keys: list[str] = field(default_factory=list)
    # A blind transfer under way: its outcome (True: connected elsewhere) once
    # the transferee's NOTIFY reports a final status.
    transfer: asyncio.Future[bool] | None = None
    # The caller's audio, 20 ms frames at 16 kHz, as the media thread decodes
    # them; None once the caller has gone.
    frames: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    # Set when either side has ended the call.
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def far_end(self) -> str:
        """Who is at the other end, for the log."""
        return "the called party" if self.outbound else "the caller"

    def caller_left(self) -> None:
        """The far end has gone (BYE, CANCEL, silence): the session's frames end."""
        if not self.caller_gone and not self.bot_gone:
            self.caller_gone = True
            self.frames.put_nowait(None)
        self.ended.set()


@dataclass(frozen=True)
class Dialog:
    """A call's dialog as the bot keeps it (RFC 3261 §12): what the bot's
    requests inside the call carry, whichever side placed it."""

    call_id: str
    local: str  # From: the bot's address with its tag
    remote: str  # To: the far end's, with its tag
    target: str  # the Request-URI: the far end's Contact
    routes: tuple[str, ...] = ()  # Route headers, from Record-Route

    def request(self, method: str, cseq: int, via: str) -> SipMessage:
        headers = [
            ("Via", via),
            ("Max-Forwards", "70"),
            ("From", self.local),
            ("To", self.remote),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
        headers += [("Route", route) for route in self.routes]
        return request(method, self.target, headers)

    @property
    def next_hop(self) -> tuple[str, int]:
        """Where the dialog's requests go: the first route, else the target."""
        uri = parse_name_addr(self.routes[0]).uri if self.routes else self.target
        return uri_host_port(uri)


def uas_dialog(invite: SipMessage, local_tag: str) -> Dialog:
    """The dialog of a call the bot answered: it is the INVITE's To."""
    remote = invite.header("From") or ""
    local = invite.header("To") or ""
    if "tag=" not in local:
        local = f"{local};tag={local_tag}"
    contact = invite.header("Contact")
    target = parse_name_addr(contact).uri if contact else parse_name_addr(remote).uri
    routes = tuple(invite.header_all("Record-Route"))
    return Dialog(invite.call_id, local, remote, target, routes)


def uac_dialog(invite: SipMessage, ok: SipMessage) -> Dialog:
    """The dialog of a call the bot placed, from its INVITE and the 200: the
    far end's tag from the 200's To, its Contact as target, the route set as
    the 200's Record-Route reversed (§12.1.2)."""
    contact = ok.header("Contact")
    target = parse_name_addr(contact).uri if contact else invite.uri or ""
    routes = tuple(reversed(ok.header_all("Record-Route")))
    return Dialog(
        invite.call_id, invite.header("From") or "", ok.header("To") or "", target, routes
    )


# -- messages of the INVITE transaction ------------------------------------------


def build_invite(
    uri: str,
    from_uri: str,
    *,
    call_id: str,
    tag: str,
    cseq: int,
    via: str,
    contact: str,
    body: bytes,
) -> SipMessage:
    """The INVITE of a call the bot places, offering ``body`` (SDP)."""
    return request(
        "INVITE",
        uri,
        [
            ("Via", via),
            ("Max-Forwards", "70"),
            ("From", f"<{from_uri}>;tag={tag}"),
            ("To", f"<{uri}>"),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} INVITE"),
            ("Contact", contact),
            ("Allow", ALLOW),
            ("User-Agent", "voicebot"),
            ("Content-Type", "application/sdp"),
        ],
        body,
    )


def _same_transaction(invite: SipMessage, method: str, to: str) -> SipMessage:
    headers = [
        ("Via", invite.header("Via") or ""),
        ("Max-Forwards", "70"),
        ("From", invite.header("From") or ""),
        ("To", to),
        ("Call-ID", invite.call_id),
        ("CSeq", f"{invite.cseq[0]} {method}"),
    ]
    headers += [("Route", route) for route in invite.header_all("Route")]
    return request(method, invite.uri or "", headers)


def ack_for_failure(invite: SipMessage, response: SipMessage) -> SipMessage:
    """The ACK of a non-2xx final response, part of the INVITE's transaction:
    its branch, Request-URI, From, Call-ID, CSeq number and Route, with the
    response's To and tag (RFC 3261 §17.1.1.3)."""
    return _same_transaction(invite, "ACK", response.header("To") or "")


def cancel_for(invite: SipMessage) -> SipMessage:
    """The CANCEL of a ringing INVITE: its branch, Request-URI, From, To (no
    tag), Call-ID, CSeq number and Route (RFC 3261 §9.1)."""
    return _same_transaction(invite, "CANCEL", invite.header("To") or "")


def ack_for_answer(dialog: Dialog, invite: SipMessage, via: str) -> SipMessage:
    """The ACK of a 200: a request of the new dialog with the INVITE's CSeq
    number and credentials (RFC 3261 §13.2.2.4)."""
    ack = dialog.request("ACK", invite.cseq[0], via)
    for header in ("Authorization", "Proxy-Authorization"):
        value = invite.header(header)
        if value:
            ack.add_header(header, value)
    return ack


def answer_challenge(
    invite: SipMessage, response: SipMessage, account: Account | None, via: str, nc: int
) -> SipMessage | None:
    """The INVITE again with credentials for a 401 or 407 (a new branch, CSeq
    plus one, credentials already given kept), or None when it cannot be
    answered: no account, no challenge, or the same kind of challenge again
    without ``stale=true`` (a wrong password)."""
    if response.status == 401:
        challenge, header = response.header("WWW-Authenticate"), "Authorization"
    else:
        challenge, header = response.header("Proxy-Authenticate"), "Proxy-Authorization"
    if account is None or not challenge:
        return None
    if invite.header(header) and "stale=true" not in challenge.lower():
        return None
    authorization = digest_authorization(
        challenge,
        "INVITE",
        invite.uri or "",
        account.auth_user or account.user,
        account.password,
        nc=nc,
        body=invite.body,
    )
    again = SipMessage(method="INVITE", uri=invite.uri, headers=list(invite.headers))
    again.body = invite.body
    again.set_header("Via", via)
    again.set_header("CSeq", f"{invite.cseq[0] + 1} INVITE")
    again.set_header(header, authorization)
    return again
