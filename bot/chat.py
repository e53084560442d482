"""Text calls: a person at a terminal, or caller lines on stdin as JSON turns.

``voicebot chat --json`` reads one caller utterance per line and writes one
JSON object per caller turn. When the bot hangs up (the caller said goodbye),
the next line starts a new call with a new id; end of input hangs up.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TextIO

from bot.call import Call, CallEngine


async def _read_line(stream: TextIO) -> str | None:
    line = await asyncio.get_running_loop().run_in_executor(None, stream.readline)
    return line if line else None


async def chat_json(engine: CallEngine, stdin: TextIO, stdout: TextIO) -> int:
    """Caller lines in, one JSON turn per line out; returns the number of turns."""
    turns = 0
    call: Call | None = None
    while (line := await _read_line(stdin)) is not None:
        if call is None:
            call = engine.new_call()
        result = await engine.turn(call, line.rstrip("\r\n"))
        stdout.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
        stdout.flush()
        turns += 1
        if result.hang_up:
            engine.end_call(call, "bot_hang_up")
            call = None
    if call is not None:
        engine.end_call(call, "caller_hang_up")
    return turns


async def chat_terminal(engine: CallEngine, stdin: TextIO = sys.stdin) -> None:
    """An interactive text call; Ctrl-D or Ctrl-C hangs up."""
    out = sys.stdout
    call = engine.new_call()
    out.write(f"Call {call.call_id}. Type what the caller says; Ctrl-D hangs up.\n")
    out.write(f"Bot: {engine.greeting()}\n")
    try:
        while True:
            out.write("You: ")
            out.flush()
            line = await _read_line(stdin)
            if line is None:
                out.write("\n")
                engine.end_call(call, "caller_hang_up")
                break
            result = await engine.turn(call, line.rstrip("\r\n"))
            for text in result.bot:
                out.write(f"Bot: {text}\n")
            if result.escalated and result.escalation_reason:
                out.write(f"[escalated to a person: {result.escalation_reason}]\n")
            if result.hang_up:
                engine.end_call(call, "bot_hang_up")
                out.write("[the bot hung up]\n")
                break
    except (KeyboardInterrupt, asyncio.CancelledError):
        engine.end_call(call, "interrupted")
        out.write("\n[call ended]\n")
