"""Calls the bot places (the UAC side of RFC 3261): the ground for calling callers back.

``SipEndpoint.dial`` sends an INVITE through the PBX or trunk in
``telephony.dial_via``, or else through the registrar of the first registered
extension, and says how it went in a ``DialResult``: answered (with a
``PhoneCall`` used as an answered incoming call is), busy, rejected, no
answer (the bot cancels after the ring time), failed (no response, the
address unreachable, a server error) or no free line.

This module holds the signalling. The INVITE client transaction (§17.1.1)
retransmits until a provisional response (timer A), gives up after 64*T1
with none (timer B) or at once when the kernel reports the address
unreachable (ICMP), and acknowledges every non-2xx final response on the
INVITE's branch. A Digest challenge is answered once per kind (401 from the
far end, 407 from a proxy) with the account's credentials. A call ringing
too long is cancelled on the INVITE's branch (§9.1). A 200 gets its ACK as a
new transaction to the far end's Contact with its tag (§13.2.2.4), again
whenever the 200 comes again. The endpoint then puts the answered call on its
line and media as it does an incoming one. The messages themselves are built
in ``dialog.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from bot.telephony.dialog import (
    Dialog,
    PhoneCall,
    ack_for_answer,
    ack_for_failure,
    answer_challenge,
    build_invite,
    cancel_for,
    uac_dialog,
)
from bot.telephony.media import RtpSession
from bot.telephony.register import Account, local_address_for
from bot.telephony.sdp import Codec, Offer, SdpError, answer_codec, build_offer, offer_codecs
from bot.telephony.sdp import parse_offer as parse_sdp
from bot.telephony.sip import (
    T1,
    TRANSACTION_SECONDS,
    SipError,
    SipMessage,
    new_call_id,
    new_tag,
    normalise_number,
    via_branch,
)

if TYPE_CHECKING:
    from bot.telephony.endpoint import SipEndpoint, TelephonySettings

log = logging.getLogger(__name__)

Outcome = Literal["answered", "busy", "rejected", "no_answer", "failed", "no_line"]
DTMF_PAYLOAD_TYPE = 101  # RFC 4733 keys in the bot's offers
BUSY_STATUSES = (486, 600)
# The BYE for a 200 the bot no longer wanted (it came after the CANCEL).
UNWANTED_BYE_SECONDS = 4.0
NO_ROUTE = (
    "cannot place calls: set telephony.dial_via (host[:port] of the PBX or trunk "
    "that places outbound calls) or register an extension in telephony.accounts"
)
_DIALLABLE = re.compile(r"^[A-Za-z0-9+*#._~-]+$")
# Linux reports ICMP errors on an unconnected UDP socket only with these set.
_IP_RECVERR = 11
_IPV6_RECVERR = 25


@dataclass(frozen=True)
class DialResult:
    """How a call the bot placed went; ``call`` is set when it was answered."""

    outcome: Outcome
    number: str
    status: int | None = None
    reason: str = ""
    call: PhoneCall | None = None
    setup_ms: int = 0


@dataclass(frozen=True)
class OutboundRoute:
    """Where the bot's calls go: the Request-URI's domain, the next hop that
    gets the INVITE, the From user, and the account whose credentials answer
    a challenge (none: a challenge refuses the call)."""

    domain: str
    next_hop: tuple[str, int]
    from_user: str
    account: Account | None = None

    def request_uri(self, number: str) -> str:
        return f"sip:{number}@{_bracket(self.domain)}"

    @property
    def from_uri(self) -> str:
        return f"sip:{self.from_user}@{_bracket(self.domain)}"


def outbound_route(
    settings: TelephonySettings, caller_id: str | None = None
) -> OutboundRoute | None:
    """The route for the bot's calls: ``dial_via`` when set (From the caller
    ID, credentials of an account registered at the same host), else the
    first account's registrar (From its extension); None when neither is set."""
    if settings.dial_via:
        host, port = host_port(settings.dial_via)
        account = next((a for a in settings.accounts if a.registrar_host_port[0] == host), None)
        user = caller_id or settings.caller_id or (account.user if account else "voicebot")
        return OutboundRoute(host, (host, port), user, account)
    if settings.accounts:
        account = settings.accounts[0]
        user = caller_id or account.user
        return OutboundRoute(account.aor_domain, account.registrar_host_port, user, account)
    return None


def host_port(text: str, default_port: int = 5060) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` as host and port."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not host or (port and not (port.isdigit() and 0 < int(port) < 65536)):
        raise ValueError(f"expected host[:port], got {text!r}")
    return host, int(port) if port else default_port


def dial_target(number: str) -> str:
    """A number or extension as a Request-URI user: a phone number loses its
    spaces, dashes and brackets; ``#`` is escaped (RFC 3261 §25.1)."""
    text = normalise_number(number.strip())
    if not _DIALLABLE.match(text):
        raise ValueError(f"cannot dial {number!r}: expected a number or an extension")
    return text.replace("#", "%23")


def outcome_for(status: int) -> Outcome:
    """The outcome a final response means."""
    if 200 <= status < 300:
        return "answered"
    if status in BUSY_STATUSES:
        return "busy"
    if 500 <= status < 600:
        return "failed"
    return "rejected"


# -- the INVITE client transaction ----------------------------------------------

Send = Callable[[SipMessage, tuple[str, int]], None]


class InviteTransaction:
    """One INVITE client transaction (RFC 3261 §17.1.1) on the endpoint's socket."""

    def __init__(self, send: Send, invite: SipMessage, destination: tuple[str, int]) -> None:
        self.invite = invite
        self.branch = via_branch(invite) or ""
        self.destination = destination
        self.final: asyncio.Future[SipMessage | None] = asyncio.get_running_loop().create_future()
        self.proceeding = asyncio.Event()  # a provisional response came
        self.unreachable = False
        self._send = send
        self._ack: tuple[SipMessage, tuple[str, int]] | None = None
        self._timer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._send(self.invite, self.destination)
        self._timer = asyncio.create_task(self._retransmit())

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    async def _retransmit(self) -> None:
        """Timer A: again after T1, 2*T1, 4*T1... until any response; timer
        B: none in 64*T1 means nothing is there."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + TRANSACTION_SECONDS
        interval = T1
        while (left := give_up - loop.time()) > 0:
            await asyncio.sleep(min(interval, left))
            if self.proceeding.is_set() or self.final.done():
                return
            if loop.time() < give_up:
                self._send(self.invite, self.destination)
            interval *= 2
        if not self.final.done():
            self.final.set_result(None)

    def on_response(self, response: SipMessage) -> None:
        status = response.status or 0
        if status < 200:
            self.proceeding.set()
            return
        if status >= 300:
            # Every copy: the far end repeats it until this ACK arrives.
            self._send(ack_for_failure(self.invite, response), self.destination)
        elif self._ack is not None:
            self._send(*self._ack)  # the 200 again: the ACK was lost
        if not self.final.done():
            self.final.set_result(response)

    def acknowledge(self, ack: SipMessage, destination: tuple[str, int]) -> None:
        """Sends the 200's ACK, and again whenever the 200 comes again."""
        self._ack = (ack, destination)
        self._send(ack, destination)

    def destination_unreachable(self, destination: tuple[str, int]) -> None:
        """The kernel reported an ICMP error for ``destination``: nothing
        answers there, so an INVITE with no response yet has failed."""
        if destination != self.destination or self.proceeding.is_set() or self.final.done():
            return
        self.unreachable = True
        self.final.set_result(None)


# -- placing a call --------------------------------------------------------------


@dataclass(frozen=True)
class Answered:
    """An answered call's signalling, for the endpoint to put on a line and
    then acknowledge: the far end acts in the dialog (re-INVITE, BYE) only
    once it has the ACK (RFC 3261 §14.1, §15), so the call must be ready."""

    invite: SipMessage
    dialog: Dialog
    peer: tuple[str, int]
    codec: Codec
    answer: Offer
    local_tag: str
    rtp_port: int
    transaction: InviteTransaction
    ack: SipMessage

    def acknowledge(self) -> None:
        self.transaction.acknowledge(self.ack, self.peer)


@dataclass(frozen=True)
class Placed:
    """What the signalling of a call came to."""

    outcome: Outcome
    status: int | None = None
    reason: str = ""
    setup_ms: int = 0
    answered: Answered | None = None


async def place_call(
    endpoint: SipEndpoint, route: OutboundRoute, number: str, ring_seconds: float
) -> Placed:
    """The INVITE, its challenges and CANCEL, up to the final response and
    the ACK of a 200. The RTP port offered is held meanwhile by a session of
    its own; the endpoint opens the call's on it once the codec is known."""
    loop = asyncio.get_running_loop()
    started = loop.time()

    def elapsed_ms() -> int:
        return int((loop.time() - started) * 1000)

    try:
        next_hop = await resolve(*route.next_hop)
    except OSError as exc:
        return Placed("failed", reason=f"cannot resolve {route.next_hop[0]}: {exc}")
    settings = endpoint.settings
    codecs = offer_codecs(list(settings.codecs))
    held = await hold_rtp_port(endpoint, codecs[0])
    transactions: list[InviteTransaction] = []
    try:
        tag = new_tag()
        host = contact_host(settings, next_hop)
        invite = build_invite(
            route.request_uri(number),
            route.from_uri,
            call_id=new_call_id(settings.host),
            tag=tag,
            cseq=secrets.randbelow(10_000) + 1,
            via=endpoint.via(),
            contact=f"<sip:{route.from_user}@{_bracket(host)}:{endpoint.local_port}>",
            body=build_offer(
                settings.sdp_host,
                held.local_port,
                codecs,
                DTMF_PAYLOAD_TYPE,
                session_id=secrets.randbelow(10**9),
                version=1,
            ),
        )
        ring_deadline = started + ring_seconds
        while True:
            tx = InviteTransaction(endpoint.send, invite, next_hop)
            transactions.append(tx)
            endpoint.invite_transactions[tx.branch] = tx
            tx.start()
            final, cancelled = await _final_response(endpoint, tx, ring_deadline)
            if final is None:
                if cancelled:
                    return Placed("no_answer", reason="no answer", setup_ms=elapsed_ms())
                where = "{}:{}".format(*next_hop)
                why = f"{where} is unreachable" if tx.unreachable else f"no response from {where}"
                return Placed("failed", reason=why, setup_ms=elapsed_ms())
            status = final.status or 0
            if status < 300:
                return await _answered(endpoint, tx, final, codecs, tag, held, cancelled, started)
            if status in (401, 407) and not cancelled:
                again = _with_credentials(invite, final, route, endpoint.via(), len(transactions))
                if again is not None:
                    invite = again
                    continue
            outcome: Outcome = "no_answer" if cancelled and status == 487 else outcome_for(status)
            return Placed(outcome, status, final.reason, elapsed_ms())
    except asyncio.CancelledError:
        for tx in transactions:
            if tx.proceeding.is_set() and not tx.final.done():
                endpoint.send(cancel_for(tx.invite), tx.destination)
        raise
    finally:
        held.close()
        for tx in transactions:
            tx.close()
            # Repeated final responses still get their ACK for a while (timer D).
            loop.call_later(TRANSACTION_SECONDS, endpoint.invite_transactions.pop, tx.branch, None)


def _with_credentials(
    invite: SipMessage, challenge: SipMessage, route: OutboundRoute, via: str, nc: int
) -> SipMessage | None:
    account = route.account
    try:
        again = answer_challenge(invite, challenge, account, via, nc)
    except SipError as exc:
        log.warning("cannot answer the challenge of %s: %s", route.domain, exc)
        return None
    answered_before = invite.header(
        "Authorization" if challenge.status == 401 else "Proxy-Authorization"
    )
    if again is None and account is not None and answered_before:
        log.warning(
            "%s refused the credentials of %s (%s %s)",
            route.domain,
            account.auth_user or account.user,
            challenge.status,
            challenge.reason,
        )
    return again


async def _final_response(
    endpoint: SipEndpoint, tx: InviteTransaction, ring_deadline: float
) -> tuple[SipMessage | None, bool]:
    """The INVITE's final response (None: none came) and whether the bot
    cancelled it. A CANCEL goes once the ring time is up and the call has
    rung (a provisional response); the 487 then has 64*T1 to come."""
    loop = asyncio.get_running_loop()
    cancel: asyncio.Task[SipMessage | None] | None = None
    cancel_deadline = 0.0
    try:
        while not tx.final.done():
            now = loop.time()
            if cancel is None and tx.proceeding.is_set() and now >= ring_deadline:
                cancel = asyncio.create_task(
                    endpoint.send_request(cancel_for(tx.invite), tx.destination)
                )
                cancel_deadline = now + TRANSACTION_SECONDS
            if cancel is not None:
                if now >= cancel_deadline:
                    break
                await _either(tx.final, None, cancel_deadline - now)
            elif tx.proceeding.is_set():
                await _either(tx.final, None, ring_deadline - now)
            else:
                await _either(
                    tx.final, tx.proceeding, ring_deadline - now if now < ring_deadline else None
                )
        return (tx.final.result() if tx.final.done() else None), cancel is not None
    finally:
        if cancel is not None:
            # Its 200 normally comes before the 487; give it a moment, then stop.
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(cancel, 2 * T1)


async def _either(
    future: asyncio.Future[SipMessage | None], event: asyncio.Event | None, timeout: float | None
) -> None:
    waiters: set[asyncio.Future[Any]] = {future}
    event_wait = asyncio.ensure_future(event.wait()) if event is not None else None
    if event_wait is not None:
        waiters.add(event_wait)
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if event_wait is not None:
            event_wait.cancel()


async def _answered(
    endpoint: SipEndpoint,
    tx: InviteTransaction,
    ok: SipMessage,
    codecs: list[Codec],
    tag: str,
    held: RtpSession,
    cancelled: bool,
    started: float,
) -> Placed:
    """The 200: the call is answered (the endpoint sends the ACK once the
    call is on its line), unless the bot had given up (its CANCEL crossed the
    answer) or the answer is unusable: then ACK and BYE at once."""
    setup_ms = int((asyncio.get_running_loop().time() - started) * 1000)
    dialog = uac_dialog(tx.invite, ok)
    try:
        peer = await resolve(*dialog.next_hop)
    except (OSError, SipError):
        peer = tx.destination
    ack = ack_for_answer(dialog, tx.invite, endpoint.via())
    reason, codec, answer = "", None, None
    try:
        answer = parse_sdp(ok.body)
        codec = answer_codec(answer, codecs)
        if codec is None:
            reason = "no codec in common in the answer"
    except SdpError as exc:
        reason = f"unusable answer: {exc}"
    if cancelled or codec is None or answer is None:
        tx.acknowledge(ack, peer)
        bye = dialog.request("BYE", tx.invite.cseq[0] + 1, endpoint.via())
        await endpoint.send_request(bye, peer, timeout=UNWANTED_BYE_SECONDS)
        if cancelled:
            return Placed("no_answer", ok.status, "answered after the CANCEL: hung up", setup_ms)
        return Placed("failed", ok.status, reason, setup_ms)
    return Placed(
        "answered",
        ok.status,
        ok.reason,
        setup_ms,
        Answered(tx.invite, dialog, peer, codec, answer, tag, held.local_port, tx, ack),
    )


async def hold_rtp_port(endpoint: SipEndpoint, codec: Codec) -> RtpSession:
    """An RTP session that only holds the offered port while the call rings
    (nothing is sent, nothing heard is used): a session's codec is fixed,
    and the answer chooses it."""

    def ignore(*_args: object) -> None:
        return None

    settings = endpoint.settings
    opened = endpoint.media.run(
        RtpSession.open(
            settings.sdp_host,
            port_range=(settings.rtp_port_min, settings.rtp_port_max),
            codec_name=codec.name,
            payload_type=codec.payload_type,
            dtmf_payload_type=DTMF_PAYLOAD_TYPE,
            on_frame=ignore,
            on_dtmf=ignore,
            on_timeout=ignore,
            timeout_seconds=float("inf"),
        )
    )
    session = await asyncio.wrap_future(opened)
    session.set_sending(False)
    return session


async def resolve(host: str, port: int) -> tuple[str, int]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    address = infos[0][4]
    return str(address[0]), int(address[1])


def contact_host(settings: TelephonySettings, remote: tuple[str, int]) -> str:
    """The bot's address in its Contact: the listening host, else (listening
    on every address) the media address or the one that reaches ``remote``."""
    if settings.host not in ("0.0.0.0", "::"):
        return settings.host
    return settings.media_address or local_address_for(remote)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def log_result(result: DialResult, line: int | None, ring_seconds: float) -> None:
    """One line per call placed, saying how it went."""
    where = f"line {line}: " if line is not None else ""
    number = result.number
    status = f"{result.status} {result.reason}" if result.status is not None else result.reason
    if result.outcome == "answered" and result.call is not None:
        log.info(
            "%s%s answered after %d ms (%s)",
            where,
            number,
            result.setup_ms,
            result.call.codec.name,
        )
    elif result.outcome == "busy":
        log.info("%s%s is busy (%s)", where, number, status)
    elif result.outcome == "rejected":
        log.info("%sthe call to %s was refused (%s)", where, number, status)
    elif result.outcome == "no_answer":
        log.info("%sno answer from %s in %g s: %s", where, number, ring_seconds, result.reason)
    elif result.outcome == "no_line":
        log.info("no free line to call %s: %s", number, result.reason)
    else:
        log.warning("%sthe call to %s failed: %s", where, number, status)


# -- ICMP reports on the endpoint's socket ---------------------------------------


def open_sip_socket(host: str, port: int) -> socket.socket:
    """The endpoint's UDP socket, bound, asking Linux to report ICMP errors
    (IP_RECVERR), so a call to an address where nothing listens fails at
    once rather than after 32 s of retransmissions."""
    family, _type, _proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[
        0
    ]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if sys.platform.startswith("linux"):
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
        sock.bind(address)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def unreachable_destinations(sock: socket.socket) -> list[tuple[str, int]]:
    """The destinations of datagrams the kernel reported an ICMP error for,
    read from the socket's error queue (which must not fill up)."""
    found: list[tuple[str, int]] = []
    if not hasattr(socket, "MSG_ERRQUEUE"):
        return found
    for _ in range(64):
        try:
            _data, _ancillary, _flags, address = sock.recvmsg(1, 1024, socket.MSG_ERRQUEUE)
        except OSError:  # empty (BlockingIOError) or not supported
            break
        if address:
            found.append((str(address[0]), int(address[1])))
    return found
