"""Blind transfer of a caller to the PBX (RFC 3515 REFER).

Where a company's agents sit on its PBX, an escalated phone call is handed
there (``escalation.transfer_to``): the bot sends REFER in the call's dialog,
and after 202 waits for the transferee's NOTIFY (a message/sipfrag status
line). A 2xx, or the transferee hanging up on the bot after accepting, means
the new call connected, and the bot leaves with BYE. A refusal, a failure
status, or TRANSFER_SECONDS without word leave the caller with the bot.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from bot.telephony.dialog import PhoneCall
from bot.telephony.sip import SipMessage

if TYPE_CHECKING:
    from bot.telephony.endpoint import SipEndpoint

log = logging.getLogger("bot.telephony.endpoint")

# How long a transfer may take before the bot keeps the caller itself.
TRANSFER_SECONDS = 30.0


async def blind_transfer(endpoint: SipEndpoint, call: PhoneCall, target: str) -> bool:
    """Transfers the caller to ``target`` (a number or a SIP URI). True once
    the transferee reports the new call connected, or hangs up on the bot
    after accepting; False when the REFER is refused or fails."""
    if not call.confirmed or call.caller_gone or call.bot_gone:
        return False
    refer_to = transfer_uri(target, call)
    refer = endpoint.in_dialog(call, "REFER")
    refer.add_header("Refer-To", f"<{refer_to}>")
    refer.add_header("Referred-By", f"<sip:voicebot@{endpoint.contact_host}>")
    refer.add_header("Contact", f"<sip:voicebot@{endpoint.contact_host}>")
    call.transfer = asyncio.get_running_loop().create_future()
    log.info("line %d: transferring the caller to %s", call.line, refer_to)
    try:
        reply = await endpoint.send_request(refer, call.peer)
        if reply is None or reply.status is None or reply.status >= 300:
            status = "no answer" if reply is None else f"{reply.status} {reply.reason}"
            log.warning("line %d: the transfer to %s was refused (%s)", call.line, refer_to, status)
            return False
        gone = asyncio.ensure_future(_caller_gone(call))
        try:
            done, _ = await asyncio.wait(
                {call.transfer, gone}, timeout=TRANSFER_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            gone.cancel()
        if call.transfer.done():
            connected = call.transfer.result()
        elif gone in done:
            connected = True  # the transferee hung up on the bot: it went through
        else:
            log.warning("line %d: no word on the transfer to %s", call.line, refer_to)
            connected = False
        if connected:
            log.info("line %d: the caller was transferred to %s", call.line, refer_to)
            endpoint.hang_up(call)
        else:
            log.warning("line %d: the transfer to %s did not connect", call.line, refer_to)
        return connected
    finally:
        call.transfer = None


def transfer_progress(call: PhoneCall, notify: SipMessage) -> None:
    """A NOTIFY in the call's dialog: the transfer's outcome when final."""
    if call.transfer is None or call.transfer.done():
        return
    if not (notify.header("Event") or "").strip().lower().startswith("refer"):
        return
    status = sipfrag_status(notify.body)
    if status is not None and status >= 200:
        call.transfer.set_result(status < 300)


async def _caller_gone(call: PhoneCall) -> bool:
    while not call.caller_gone:
        await asyncio.sleep(0.05)
    return True


def sipfrag_status(body: bytes) -> int | None:
    """The status code of a message/sipfrag body's first line ("SIP/2.0 200 OK")."""
    first = body.split(b"\n", 1)[0].decode("utf-8", "replace").strip().split()
    if len(first) >= 2 and first[0].upper().startswith("SIP/") and first[1].isdigit():
        return int(first[1])
    return None


def transfer_uri(target: str, call: PhoneCall) -> str:
    """Where a transfer goes: a full SIP URI as given, or a number (an
    extension, a queue) at the PBX that sent the call."""
    target = target.strip()
    if target.lower().startswith(("sip:", "sips:", "tel:")):
        return target
    host = call.peer[0]
    return f"sip:{target}@[{host}]" if ":" in host else f"sip:{target}@{host}"
