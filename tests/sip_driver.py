"""The bot's SIP endpoint on its own, for protocol tests that need no dialogue.

Run inside a test's network namespace: ``python -m tests.sip_driver
--listen 127.0.0.1:5092 [--account registrar=...,user=...,password=...]
[--transfer-to 600]``. It registers the accounts, answers calls and, with
``--transfer-to``, transfers each answered call (REFER) once the caller has
acknowledged it; without a transfer, or when it fails, it hangs up after
``--hold-seconds``. Each outcome is printed as one JSON object per line;
the endpoint's log goes to stderr. SIGTERM stops it as ``voicebot serve``
stops (calls finish, accounts unregister).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys

from bot.telephony.endpoint import PhoneCall, SipEndpoint, TelephonySettings
from bot.telephony.media import MediaThread
from bot.telephony.register import parse_accounts


def _account(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in text.split(","))


def _say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


async def main(args: argparse.Namespace) -> None:
    host, _, port = args.listen.rpartition(":")
    settings = TelephonySettings(
        host=host,
        port=int(port),
        lines=2,
        rtp_port_min=21000,
        rtp_port_max=21099,
        answer_after_ms=0,
        stop_grace_seconds=5.0,
        accounts=tuple(parse_accounts([_account(a) for a in args.account], {})),
        transfer_to=args.transfer_to,
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
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await endpoint.stop()
    media.stop()
    _say(event="stopped", registrations=[r.registrations for r in endpoint.registrations])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--account", action="append", default=[])
    parser.add_argument("--transfer-to", default="")
    parser.add_argument("--hold-seconds", type=float, default=0.5)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    asyncio.run(main(parser.parse_args()))
