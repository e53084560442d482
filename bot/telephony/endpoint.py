"""The bot's SIP endpoint: phone calls in over UDP, one per line.

A PBX or a trunk sends INVITEs to the listening address. Each call takes a
free line; with every line busy the call gets ``486 Busy Here`` so the PBX
can hunt elsewhere or queue it. An answered call gets its own RTP session on
the media thread (``bot/telephony/media.py``) and its own voice session on
this loop, so one call's slow turn never delays another's audio.

The endpoint answers what a phone or PBX sends in a call's life: CANCEL
before the answer (487), an offer with no codec we speak (488), OPTIONS
keep-alives, re-INVITEs (hold and back), SIP INFO keypad digits, BYE from
either side (the bot's retransmitted until answered), and garbage (logged,
ignored). The 200 OK is retransmitted until the ACK comes (RFC 3261 §13.3.1.4).

The bot also places calls (``dial``, the signalling in ``dialling.py``): an
answered one takes a line from the same pool and is then a call like any
other, its in-dialog requests built from its ``Dialog`` whichever side
placed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from bot.call import LineInfo
from bot.telephony.dialling import (
    NO_ROUTE,
    DialResult,
    InviteTransaction,
    Placed,
    dial_target,
    log_result,
    open_sip_socket,
    outbound_route,
    place_call,
    unreachable_destinations,
)
from bot.telephony.dialog import PhoneCall, uas_dialog
from bot.telephony.media import MediaError, MediaThread, RtpSession
from bot.telephony.register import Account, Registration
from bot.telephony.sdp import Offer, SdpError, build_answer, choose_codec, parse_offer
from bot.telephony.sip import (
    ALLOW,
    T1,
    T2,
    TRANSACTION_SECONDS,
    SipError,
    SipMessage,
    caller_id,
    dialled_number,
    new_branch,
    new_tag,
    normalise_number,
    parse_dtmf_info,
    response_to,
    via_branch,
)
from bot.telephony.transfer import blind_transfer, transfer_progress

log = logging.getLogger(__name__)

SDP = "application/sdp"


@dataclass(frozen=True)
class TelephonySettings:
    host: str = "127.0.0.1"
    port: int = 5060
    lines: int = 4
    # The address put in SDP for media (empty: the listening host).
    media_address: str = ""
    rtp_port_min: int = 20000
    rtp_port_max: int = 20999
    # Codecs by preference; the first one the caller offers is used.
    codecs: tuple[str, ...] = ("G722", "PCMU", "PCMA")
    # No audio at all for this long: the caller is gone (a phone that
    # vanished without BYE).
    rtp_timeout_seconds: float = 30.0
    # A ring before the answer: a CANCEL in this time ends the call unanswered.
    answer_after_ms: int = 300
    # On stop, calls in progress get this long to finish.
    stop_grace_seconds: float = 60.0
    # Extensions the bot registers with a PBX (empty: calls sent straight here).
    accounts: tuple[Account, ...] = ()
    # escalation.transfer_to: escalated phone calls are transferred (REFER)
    # here, a PBX queue or number, instead of waiting on the bot's line.
    transfer_to: str = ""
    # host[:port] of the PBX or trunk that places the bot's calls (empty:
    # through the first account's registrar, if any).
    dial_via: str = ""
    # The From user of calls through dial_via (default: voicebot).
    caller_id: str = ""

    @property
    def sdp_host(self) -> str:
        return self.media_address or self.host


CallHandler = Callable[[PhoneCall], Awaitable[None]]


class SipEndpoint(asyncio.DatagramProtocol):
    """Answers calls on ``settings.host:port``; ``handler`` runs each one."""

    def __init__(
        self,
        settings: TelephonySettings,
        media: MediaThread,
        handler: CallHandler,
    ):
        self.settings = settings
        self.media = media
        self.handler = handler
        self._transport: asyncio.DatagramTransport | None = None
        self._calls: dict[str, PhoneCall] = {}
        self._free = list(range(1, settings.lines + 1))
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending_bye: dict[str, asyncio.Task[None]] = {}
        # Requests the bot sends outside BYE (REGISTER, OPTIONS, REFER, CANCEL),
        # by Via branch and method (a CANCEL shares its INVITE's branch).
        self._client: dict[tuple[str, str], asyncio.Future[SipMessage]] = {}
        self._provisional: set[tuple[str, str]] = set()
        # INVITEs of calls the bot places, by Via branch.
        self.invite_transactions: dict[str, InviteTransaction] = {}
        self._socket: socket.socket | None = None
        self.registrations = [Registration(self, account) for account in settings.accounts]
        self._stopping = False
        self._garbage = 0
        self.stats = {"answered": 0, "busy": 0, "rejected": 0, "garbage": 0, "dialled": 0}

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._socket = open_sip_socket(self.settings.host, self.settings.port)
            await loop.create_datagram_endpoint(lambda: self, sock=self._socket)
        except OSError as exc:
            raise TelephonyError(
                "sip_listen",
                f"cannot listen for SIP on {self.settings.host}:{self.settings.port}: {exc}",
            ) from exc
        log.info(
            "answering SIP calls on %s:%d, %d line(s)",
            self.settings.host,
            self.settings.port,
            self.settings.lines,
        )
        for registration in self.registrations:
            registration.start()

    @property
    def local_port(self) -> int:
        assert self._transport is not None
        return int(self._transport.get_extra_info("sockname")[1])

    @property
    def calls_in_progress(self) -> int:
        return len(self._calls)

    async def stop(self) -> None:
        """Takes no new calls, lets calls in progress finish (up to the grace
        time), then hangs up the rest."""
        self._stopping = True
        deadline = time.monotonic() + self.settings.stop_grace_seconds
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(set(self._tasks), timeout=deadline - time.monotonic())
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for bye in list(self._pending_bye.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(bye, 2.0)
        await asyncio.gather(*(r.stop() for r in self.registrations), return_exceptions=True)
        if self._transport is not None:
            self._transport.close()

    # -- datagrams ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Any datagram transport (the default loop's or uvloop's).
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if data.strip(b"\r\n") == b"":
            return  # a keep-alive (RFC 5626 CRLF)
        try:
            message = SipMessage.parse(data)
        except SipError as exc:
            self.stats["garbage"] += 1
            if self.stats["garbage"] <= 10 or self.stats["garbage"] % 1000 == 0:
                log.warning("ignored a malformed SIP datagram from %s:%d: %s", *addr, exc)
            return
        try:
            if message.is_request:
                self._on_request(message, addr)
            else:
                self._on_response(message)
        except (SipError, ValueError) as exc:
            log.warning("could not handle SIP %s from %s:%d: %s", message.method, *addr, exc)
            if message.is_request and message.method != "ACK":
                self.send(response_to(message, 400, "Bad Request"), addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("SIP socket error: %s", exc)
        if self._socket is None:
            return
        for destination in unreachable_destinations(self._socket):
            for transaction in list(self.invite_transactions.values()):
                transaction.destination_unreachable(destination)

    def send(self, message: SipMessage, addr: tuple[str, int]) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(message.to_bytes(), addr)

    # -- requests ----------------------------------------------------------------

    def _on_request(self, message: SipMessage, addr: tuple[str, int]) -> None:
        method = message.method
        call = self._calls.get(message.call_id)
        if method == "INVITE":
            if call is None:
                self._on_new_invite(message, addr)
            else:
                self._on_reinvite(call, message, addr)
        elif method == "ACK":
            if call is not None:
                call.confirmed = True
        elif method == "OPTIONS":
            reply = response_to(message, 200, "OK")
            reply.add_header("Allow", ALLOW)
            reply.add_header("Accept", SDP)
            self.send(reply, addr)
        elif call is None:
            self.send(response_to(message, 481, "Call/Transaction Does Not Exist"), addr)
        elif method == "BYE":
            self.send(response_to(message, 200, "OK"), addr)
            log.info("line %d: %s hung up", call.line, call.far_end)
            call.caller_left()
        elif method == "CANCEL":
            self.send(response_to(message, 200, "OK"), addr)
            if not call.answered and not call.outbound:
                self.send(response_to(call.invite, 487, "Request Terminated", call.local_tag), addr)
                log.info("line %d: the caller gave up before the answer", call.line)
                call.caller_left()
        elif method == "INFO":
            digit = parse_dtmf_info(message.header("Content-Type") or "", message.body)
            if digit is not None:
                call.keys.append(digit)
            self.send(response_to(message, 200, "OK"), addr)
        elif method == "NOTIFY":
            self.send(response_to(message, 200, "OK"), addr)
            self._on_notify(call, message)
        else:
            reply = response_to(message, 501, "Not Implemented")
            reply.add_header("Allow", ALLOW)
            self.send(reply, addr)

    def _on_new_invite(self, invite: SipMessage, addr: tuple[str, int]) -> None:
        if self._stopping:
            reply = response_to(invite, 503, "Service Unavailable")
            reply.add_header("Retry-After", "60")
            self.send(reply, addr)
            return
        if not self._free:
            self.stats["busy"] += 1
            log.info("all %d line(s) busy: 486 to a new call", self.settings.lines)
            self.send(response_to(invite, 486, "Busy Here", new_tag()), addr)
            return
        try:
            offer = parse_offer(invite.body)
        except SdpError as exc:
            self.stats["rejected"] += 1
            log.info("refused a call: its offer is unusable (%s)", exc)
            self.send(response_to(invite, 488, "Not Acceptable Here", new_tag()), addr)
            return
        codec = choose_codec(offer, list(self.settings.codecs))
        if codec is None:
            self.stats["rejected"] += 1
            offered = ", ".join(name for _pt, name, _rate in offer.codecs)
            log.info("refused a call: no codec in common (offered %s)", offered)
            reply = response_to(invite, 488, "Not Acceptable Here", new_tag())
            reply.add_header("Warning", '304 voicebot "no common codec"')
            self.send(reply, addr)
            return
        identity = caller_id(invite)
        line = self._free.pop(0)
        call = PhoneCall(
            call_id=invite.call_id,
            line=line,
            invite=invite,
            peer=addr,
            local_tag=new_tag(),
            info=LineInfo(
                line=line,
                caller_number=identity.number,
                withheld=identity.withheld,
                dialled_number=dialled_number(invite),
            ),
            codec=codec,
            offer=offer,
        )
        self._calls[call.call_id] = call
        self.send(response_to(invite, 100, "Trying"), addr)
        task = asyncio.create_task(self._run_call(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_reinvite(self, call: PhoneCall, invite: SipMessage, addr: tuple[str, int]) -> None:
        if not call.outbound and invite.cseq == call.invite.cseq:
            if call.last_response is not None:
                self.send(call.last_response, addr)  # a retransmitted INVITE
            return
        try:
            offer = parse_offer(invite.body)
        except SdpError as exc:
            log.info("line %d: 488 to a re-INVITE: its offer is unusable (%s)", call.line, exc)
            self.send(response_to(invite, 488, "Not Acceptable Here"), addr)
            return
        codec = choose_codec(offer, [call.codec.name]) or choose_codec(
            offer, list(self.settings.codecs)
        )
        if codec is None or codec.name != call.codec.name or call.rtp is None:
            self.send(response_to(invite, 488, "Not Acceptable Here"), addr)
            return
        call.offer = offer
        rtp = call.rtp
        if offer.connection_host != "0.0.0.0":
            rtp.set_remote(offer.connection_host, offer.audio_port)
        rtp.set_sending(_sends(offer))
        log.info("line %d: %s %s", call.line, call.far_end, "holds" if offer.on_hold else "resumed")
        call.sdp_version += 1
        self.send(self._answer(call, invite, offer), addr)

    def _answer(self, call: PhoneCall, invite: SipMessage, offer: Offer) -> SipMessage:
        assert call.rtp is not None
        body = build_answer(
            self.settings.sdp_host,
            call.rtp.local_port,
            call.codec,
            offer.dtmf_payload_type,
            offer.direction,
            session_id=abs(hash(call.call_id)) % 10**9,
            version=call.sdp_version,
        )
        reply = response_to(invite, 200, "OK", call.local_tag, body, SDP)
        reply.add_header("Contact", f"<sip:voicebot@{self.settings.host}:{self.local_port}>")
        reply.add_header("Allow", ALLOW)
        return reply

    # -- a call's life -----------------------------------------------------------

    async def _run_call(self, call: PhoneCall) -> None:
        try:
            ringing = response_to(call.invite, 180, "Ringing", call.local_tag)
            self.send(ringing, call.peer)
            offer = call.offer
            assert offer is not None  # an incoming call's INVITE had one
            call.rtp = await self._open_media(call)
            await asyncio.sleep(self.settings.answer_after_ms / 1000)
            if call.caller_gone:
                return  # cancelled while ringing
            ok = self._answer(call, call.invite, offer)
            call.last_response = ok
            call.answered = True
            self.stats["answered"] += 1
            call.rtp.set_sending(_sends(offer))
            self.send(ok, call.peer)
            retransmit = asyncio.create_task(self._until_acked(call, ok))
            log.info(
                "line %d: answered a call from %s (%s)",
                call.line,
                call.info.caller_number or ("a withheld number" if call.info.withheld else "?"),
                call.codec.name,
            )
            try:
                await self.handler(call)
            finally:
                retransmit.cancel()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("line %d: the call failed", call.line)
            if not call.answered:
                self.send(
                    response_to(call.invite, 500, "Server Internal Error", call.local_tag),
                    call.peer,
                )
        finally:
            self._release(call)

    def _release(self, call: PhoneCall) -> None:
        """The call is over: BYE unless the far end left, media closed, line free."""
        if call.answered and not call.caller_gone:
            self.hang_up(call)
        if call.rtp is not None:
            call.rtp.close()
        self._calls.pop(call.call_id, None)
        self._give_back(call.line)

    def _give_back(self, line: int) -> None:
        self._free.append(line)
        self._free.sort()

    async def _open_media(self, call: PhoneCall, port: int | None = None) -> RtpSession:
        """The call's RTP session, on ``port`` when given (a placed call's,
        offered while it rang), else on a free port of the range."""
        loop = asyncio.get_running_loop()
        offer = call.offer
        assert offer is not None

        def frame_arrived(frame: bytes) -> None:
            loop.call_soon_threadsafe(call.frames.put_nowait, frame)

        def timed_out() -> None:
            log.info("line %d: no audio from %s: the line is dead", call.line, call.far_end)
            loop.call_soon_threadsafe(call.caller_left)

        def key_pressed(digit: str) -> None:
            loop.call_soon_threadsafe(call.keys.append, digit)

        ports = (port, port) if port else (self.settings.rtp_port_min, self.settings.rtp_port_max)
        # The port of a placed call was held by another session until just now.
        for attempt in range(5 if port else 1):
            opened = self.media.run(
                RtpSession.open(
                    self.settings.sdp_host,
                    port_range=ports,
                    codec_name=call.codec.name,
                    payload_type=call.codec.payload_type,
                    dtmf_payload_type=offer.dtmf_payload_type,
                    on_frame=frame_arrived,
                    on_dtmf=key_pressed,
                    on_timeout=timed_out,
                    timeout_seconds=self.settings.rtp_timeout_seconds,
                )
            )
            try:
                rtp = await asyncio.wrap_future(opened)
                break
            except MediaError:
                if attempt == 4 or not port:
                    raise
                await asyncio.sleep(0.02)
        rtp.set_sending(False)  # no media before the answer
        if offer.connection_host != "0.0.0.0":
            rtp.set_remote(offer.connection_host, offer.audio_port)
        return rtp

    async def _until_acked(self, call: PhoneCall, ok: SipMessage) -> None:
        interval, waited = T1, 0.0
        while not call.confirmed and waited < TRANSACTION_SECONDS:
            await asyncio.sleep(interval)
            waited += interval
            if call.confirmed or call.caller_gone:
                return
            self.send(ok, call.peer)
            interval = min(interval * 2, T2)
        if not call.confirmed:
            log.warning("line %d: the caller never acknowledged the answer", call.line)
            call.caller_left()

    def hang_up(self, call: PhoneCall) -> None:
        """The bot ends the call: BYE, retransmitted until answered."""
        if call.caller_gone or call.bot_gone:
            return
        call.bot_gone = True
        call.frames.put_nowait(None)
        call.ended.set()
        bye = self.in_dialog(call, "BYE")
        log.info("line %d: the bot hangs up", call.line)
        task = asyncio.create_task(self._until_answered(call.call_id, bye, call.peer))
        self._pending_bye[call.call_id] = task
        task.add_done_callback(lambda _t: self._pending_bye.pop(call.call_id, None))

    async def _until_answered(self, call_id: str, bye: SipMessage, peer: tuple[str, int]) -> None:
        interval, waited = T1, 0.0
        self.send(bye, peer)
        while waited < TRANSACTION_SECONDS:
            await asyncio.sleep(interval)
            waited += interval
            if call_id not in self._pending_bye:
                return
            self.send(bye, peer)
            interval = min(interval * 2, T2)

    # -- calls the bot places ----------------------------------------------------

    async def dial(
        self, number: str, *, caller_id: str | None = None, ring_seconds: float = 30.0
    ) -> DialResult:
        """Calls ``number`` through ``telephony.dial_via`` or the first
        account's registrar, letting it ring ``ring_seconds``. An answered
        call holds a line (the pool incoming calls use) and is used as an
        answered incoming call is, until either side hangs up. Raises
        TelephonyError when no route is set or the number cannot be dialled."""
        route = outbound_route(self.settings, caller_id)
        if route is None:
            raise TelephonyError("no_outbound", NO_ROUTE)
        try:
            target = dial_target(number)
        except ValueError as exc:
            raise TelephonyError("dial_number", str(exc)) from exc
        if self._stopping or not self._free:
            why = "stopping" if self._stopping else f"all {self.settings.lines} line(s) busy"
            result = DialResult("no_line", number, reason=why)
            log_result(result, None, ring_seconds)
            return result
        line = self._free.pop(0)
        try:
            placed = await place_call(self, route, target, ring_seconds)
        except BaseException:
            self._give_back(line)
            raise
        if placed.answered is None:
            self._give_back(line)
            result = DialResult(
                placed.outcome, number, placed.status, placed.reason, None, placed.setup_ms
            )
        else:
            result = await self._put_on_line(placed, line, number)
        log_result(result, line, ring_seconds)
        return result

    async def _put_on_line(self, placed: Placed, line: int, number: str) -> DialResult:
        """An answered placed call on its line, with its media, until it ends."""
        answered = placed.answered
        assert answered is not None
        call = PhoneCall(
            call_id=answered.invite.call_id,
            line=line,
            invite=answered.invite,
            peer=answered.peer,
            local_tag=answered.local_tag,
            info=LineInfo(line=line, caller_number=normalise_number(number), dialled_number=number),
            codec=answered.codec,
            offer=answered.answer,
            outbound=True,
            dialog=answered.dialog,
            answered=True,
            confirmed=True,
            cseq=answered.invite.cseq[0],
        )
        self._calls[call.call_id] = call
        try:
            call.rtp = await self._open_media(call, answered.rtp_port)
        except BaseException as exc:
            answered.acknowledge()
            self._release(call)  # BYE: the call cannot go on
            if not isinstance(exc, MediaError):
                raise
            return DialResult(
                "failed", number, placed.status, f"no RTP: {exc}", None, placed.setup_ms
            )
        call.rtp.set_sending(_sends(answered.answer))
        # Only now: the far end may act in the dialog once it has the ACK.
        answered.acknowledge()
        self.stats["dialled"] += 1
        task = asyncio.create_task(self._run_placed(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return DialResult("answered", number, placed.status, placed.reason, call, placed.setup_ms)

    async def _run_placed(self, call: PhoneCall) -> None:
        try:
            await call.ended.wait()
        finally:
            self._release(call)

    # -- requests the bot sends --------------------------------------------------

    async def send_request(
        self, message: SipMessage, addr: tuple[str, int], timeout: float = TRANSACTION_SECONDS
    ) -> SipMessage | None:
        """Sends a non-INVITE request and waits for its final response,
        retransmitting as RFC 3261 §17.1.2 says; None when nothing answers."""
        branch = via_branch(message)
        if not branch:
            raise SipError("a request the bot sends needs a Via branch")
        key = (branch, message.method or "")
        future: asyncio.Future[SipMessage] = asyncio.get_running_loop().create_future()
        self._client[key] = future
        interval, deadline = T1, time.monotonic() + timeout
        try:
            self.send(message, addr)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                with contextlib.suppress(asyncio.TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(future), min(interval, left))
                self.send(message, addr)
                interval = T2 if key in self._provisional else min(interval * 2, T2)
        finally:
            self._client.pop(key, None)
            self._provisional.discard(key)

    def via(self) -> str:
        return f"SIP/2.0/UDP {self._via_host()};branch={new_branch()};rport"

    def in_dialog(self, call: PhoneCall, method: str) -> SipMessage:
        """A new request inside a call's dialog, whichever side placed the call."""
        call.cseq += 1
        dialog = call.dialog or uas_dialog(call.invite, call.local_tag)
        return dialog.request(method, call.cseq, self.via())

    async def transfer(self, call: PhoneCall, target: str) -> bool:
        """A blind transfer of the caller (see ``bot.telephony.transfer``)."""
        return await blind_transfer(self, call, target)

    def _on_notify(self, call: PhoneCall, notify: SipMessage) -> None:
        transfer_progress(call, notify)

    @property
    def contact_host(self) -> str:
        return self._via_host()

    def _via_host(self) -> str:
        return f"{self.settings.host}:{self.local_port}"

    def _on_response(self, message: SipMessage) -> None:
        branch = via_branch(message) or ""
        _number, method = message.cseq
        invite = self.invite_transactions.get(branch) if method == "INVITE" else None
        if invite is not None:
            invite.on_response(message)
            return
        waiting = self._client.get((branch, method))
        if waiting is not None and message.status is not None:
            if message.status >= 200:
                if not waiting.done():
                    waiting.set_result(message)
            else:
                self._provisional.add((branch, method))
            return
        if method == "BYE" and message.status is not None and message.status >= 200:
            task = self._pending_bye.pop(message.call_id, None)
            if task is not None:
                task.cancel()


def _sends(offer: Offer) -> bool:
    """Whether the bot sends audio under this offer (not while held)."""
    return offer.direction in ("sendrecv", "recvonly") and not offer.on_hold


class TelephonyError(RuntimeError):
    """Phone lines that cannot be served (the address is taken, say)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
