"""A voice call at real-time pace for the agents' voice tests, run inside the
test's network namespace (the bot's WebRTC end must gather its candidates
there, as the browser's does).

The caller's audio is a WAV file played at the pace of a live call
(``FileChannel(real_time=True)``); the caller's first words are decoded by
the scripted recogniser (no English model exists here: see tests/scripted.py),
every later recogniser (the agent's voice) is the real Vosk model given with
``--asr-model``. Everything else is the product's: dialogue, queue, hold,
the agent's WebRTC link. Settings come from the environment (VOICEBOT_*), so
the console started by the test shares the queue and the call store.

Prints every call event as one JSON line; writes what the caller heard
(the bot's track: the bot's voice, hold music and the agent's voice) to
``--heard``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from bot.call import CallEngine
from bot.events import CallEvent
from bot.file_channel import FileChannel, write_wav
from bot.logs import setup_logging
from bot.settings import load_settings
from bot.voice import SpeechStack, load_recogniser_factory
from tests.scripted import ScriptedRecogniser


def main(args: argparse.Namespace) -> None:
    settings = load_settings()
    setup_logging(settings.log_file, "INFO")
    vosk = load_recogniser_factory(settings, args.asr_model)
    made = []

    def new_recogniser():  # type: ignore[no-untyped-def]
        made.append(1)
        if len(made) == 1:
            return ScriptedRecogniser(args.caller_says)
        return vosk()

    def show(event: CallEvent) -> None:
        print(json.dumps(event.to_dict()), flush=True)

    engine = CallEngine(settings)
    engine.start()
    stack = SpeechStack.load(settings, new_recogniser=new_recogniser)

    async def run() -> None:
        await engine.warm_up()
        print(json.dumps({"event": "ready"}), flush=True)
        channel = FileChannel.from_wav(Path(args.caller), tail_seconds=1.0, real_time=True)
        session = stack.session(engine, channel, [show])
        try:
            await session.run()
        finally:
            await channel.close()
            write_wav(Path(args.heard), channel.bot_track())

    try:
        asyncio.run(run())
    finally:
        stack.close()
        engine.close()
    print(json.dumps({"event": "done"}), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--caller", required=True)
    parser.add_argument("--heard", required=True)
    parser.add_argument("--asr-model", required=True)
    parser.add_argument("--caller-says", nargs="+", default=["i want to speak to a person please"])
    main(parser.parse_args())
    sys.exit(0)
