"""The bot's SIP endpoint on its own, for protocol tests that need no dialogue.

Run inside a test's network namespace: ``python -m tests.sip_driver
--listen 127.0.0.1:5092 [--account registrar=...,user=...,password=...]
[--transfer-to 600] [--dial 600 --dial-via 127.0.0.1:5310]``. It registers
the accounts, answers calls and, with ``--transfer-to``, transfers each
answered call (REFER) once the caller has acknowledged it; without a
transfer, or when it fails, it hangs up after ``--hold-seconds``. With
``--dial`` (repeatable: the numbers are dialled at once) it places calls
once ready; an answered one is used through a ``PhoneLine`` as the voice
session would (a tone played, the far end's frames counted) for
``--hold-seconds``, then hung up unless the far end went first. Each outcome
is printed as one JSON object per line; the endpoint's log goes to stderr.
SIGTERM stops it as ``voicebot serve`` stops (calls finish, accounts
unregister).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import signal
import struct
import sys

from bot.telephony.endpoint import PhoneCall, SipEndpoint, TelephonyError, TelephonySettings
from bot.telephony.line import PhoneLine
from bot.telephony.media import MediaThread
from bot.telephony.register import parse_accounts


def _account(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.split(","))


def _say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def _tone(seconds: float, hz: float = 440.0, rate: int = 16000) -> bytes:
    samples = int(seconds * rate)
    return b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * hz * n / rate))) for n in range(samples)
    )


async def _dial(endpoint: SipEndpoint, number: str, args: argparse.Namespace) -> None:
    try:
        result = await endpoint.dial(
            number, caller_id=args.caller_id or None, ring_seconds=args.ring_seconds
        )
    except TelephonyError as exc:
        _say(event="dial_error", number=number, code=exc.code, message=str(exc))
        return
    _say(
        event="dialled",
        number=number,
        outcome=result.outcome,
        status=result.status,
        reason=result.reason,
        setup_ms=result.setup_ms,
        line=result.call.line if result.call else None,
        codec=result.call.codec.name if result.call else None,
    )
    if result.call is None:
        return
    line = PhoneLine(endpoint, result.call)
    frames = 0

    async def listen() -> None:
        nonlocal frames
        async for _frame in line.frames():
            frames += 1

    listening = asyncio.create_task(listen())
    played = await line.play(_tone(0.2))
    await asyncio.wait({listening}, timeout=args.hold_seconds)
    rtp = result.call.rtp.stats if result.call.rtp is not None else {}
    by = await line.clear_line()
    await listening
    _say(
        event="hung_up",
        number=number,
        by=by,
        played=played,
        frames=frames,
        rtp=rtp,
        keys=line.take_keys(),
    )


async def main(args: argparse.Namespace) -> None:
    host, _, port = args.listen.rpartition(":")
    settings = TelephonySettings(
        host=host,
        port=int(port),
        lines=args.lines,
        rtp_port_min=21000,
        rtp_port_max=21099,
        answer_after_ms=0,
        stop_grace_seconds=5.0,
        accounts=tuple(parse_accounts([_account(a) for a in args.account], {})),
        transfer_to=args.transfer_to,
        dial_via=args.dial_via,
    )
    media = MediaThread()
    endpoint: SipEndpoint

    async def handle(call: PhoneCall) -> None:
        _say(event="answered", call_id=call.call_id, caller=call.info.caller_number)
        while not call.confirmed and not call.caller_gone:
            await asyncio.sleep(0.02)
        if settings.transfer_to:
            connected = await endpoint.transfer(call, settings.transfer_to)
            _say(event="transfer", call_id=call.call_id, connected=connected)
            if connected:
                return
        await asyncio.sleep(args.hold_seconds)
        endpoint.hang_up(call)
        _say(event="hung_up", call_id=call.call_id, caller_gone=call.caller_gone)

    endpoint = SipEndpoint(settings, media, handle)
    media.start()
    await endpoint.start()
    _say(event="ready", port=endpoint.local_port)
    dialling = asyncio.gather(*(_dial(endpoint, number, args) for number in args.dial))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    dialling.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await dialling
    await endpoint.stop()
    media.stop()
    _say(event="stopped", registrations=[r.registrations for r in endpoint.registrations])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--lines", type=int, default=2)
    parser.add_argument("--account", action="append", default=[])
    parser.add_argument("--transfer-to", default="")
    parser.add_argument("--hold-seconds", type=float, default=0.5)
    parser.add_argument("--dial", action="append", default=[])
    parser.add_argument("--dial-via", default="")
    parser.add_argument("--caller-id", default="")
    parser.add_argument("--ring-seconds", type=float, default=30.0)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    asyncio.run(main(parser.parse_args()))
