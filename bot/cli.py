"""The ``voicebot`` command."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import sys
import warnings
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from bot import __version__
from bot.connectivity import UnreachableError, check_stores
from bot.logs import json_stdout, setup_logging
from bot.settings import Settings, SettingsError, load_settings
from bot.speech.models import DEFAULT_BASE_URL as DEFAULT_MODEL_URL
from bot.training.cli import TrainCliError, add_train_parser, run_train_command


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


# A database or Redis that cannot be reached (sysexits' EX_UNAVAILABLE: a
# supervisor may start the command again, unlike after a usage error's 2).
EXIT_UNAVAILABLE = 69
# Commands that open no database; every other one opens the call store's
# (store.url), checked at start.
_NO_DATABASE_COMMANDS = frozenset({"models", "devices"})
# Commands that run calls: Rasa's tracker and lock stores are checked too.
_CALL_COMMANDS = frozenset({"chat", "call", "run", "serve"})


def _run_interruptible(work: Callable[[], Coroutine[Any, Any, None]]) -> int:
    """Runs ``work``; Ctrl-C cancels it (so calls end cleanly and are saved) and gives 130."""
    interrupted = False

    async def main() -> None:
        nonlocal interrupted
        task = asyncio.current_task()
        assert task is not None

        def on_interrupt() -> None:
            nonlocal interrupted
            interrupted = True
            task.cancel()

        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
        loop.add_signal_handler(signal.SIGTERM, on_interrupt)
        await work()

    try:
        asyncio.run(main())
    except asyncio.CancelledError:
        if not interrupted:
            raise
    return 130 if interrupted else 0


def _with_overrides(settings: Settings, args: argparse.Namespace) -> Settings:
    dialogue = settings.dialogue
    if getattr(args, "model", None):
        dialogue = dataclasses.replace(dialogue, model=args.model)
    if getattr(args, "actions_url", None):
        dialogue = dataclasses.replace(dialogue, actions_url=args.actions_url)
    return dataclasses.replace(settings, dialogue=dialogue)


def _cmd_chat(settings: Settings, args: argparse.Namespace) -> int:
    from bot.action_server import ActionServerError
    from bot.call import CallEngine
    from bot.chat import chat_json, chat_terminal
    from bot.dialogue import DialogueError
    from bot.model_store import ModelError

    out = json_stdout() if args.json else sys.stdout
    engine = CallEngine(_with_overrides(settings, args))

    async def run() -> None:
        try:
            engine.start()
            await engine.warm_up()
            if args.json:
                await chat_json(engine, sys.stdin, out)
            else:
                await chat_terminal(engine)
        finally:
            engine.close()

    try:
        return _run_interruptible(run)
    except (ModelError, DialogueError, ActionServerError) as exc:
        raise CliError(str(exc)) from exc


def _voice_errors() -> tuple[type[Exception], ...]:
    from bot.action_server import ActionServerError
    from bot.dialogue import DialogueError
    from bot.file_channel import AudioFileError
    from bot.model_store import ModelError
    from bot.soundcard import AudioDeviceError
    from bot.speech.asr import AsrError
    from bot.speech.models import SpeechModelError
    from bot.speech.tts import TtsError

    return (
        ModelError, DialogueError, ActionServerError, AudioFileError, AudioDeviceError,
        AsrError, SpeechModelError, TtsError,
    )  # fmt: skip


def _run_voice(settings: Settings, args: argparse.Namespace, on_file: bool) -> int:
    """A voice call from a WAV file (``call``) or on the sound card (``run``)."""
    from pathlib import Path

    from bot.call import CallEngine
    from bot.events import CallEvent, EventListener
    from bot.voice import SpeechStack, call_from_file, call_on_sound_card

    errors = _voice_errors()
    out = json_stdout() if getattr(args, "json", False) else None
    listeners: list[EventListener] = []
    if out is not None:

        def print_event(event: CallEvent) -> None:
            out.write(event.to_json() + "\n")

        listeners.append(print_event)
    elif not on_file:
        listeners.append(_print_progress)
    settings = _with_overrides(settings, args)
    engine = CallEngine(settings)
    # A file call is over in moments: only --metrics-listen gives it a listener.
    operations = _start_operations(settings, args, engine, use_settings=not on_file)
    if operations is not None:
        listeners.append(operations.record)

    async def run() -> None:
        stack = None
        try:
            if on_file:
                # Checks the audio before seconds go into loading models.
                from bot.file_channel import read_wav_16k

                read_wav_16k(Path(args.input))
            engine.start()
            await engine.warm_up()
            stack = SpeechStack.load(settings, args.asr_model)
            if operations is not None:
                operations.mark_answering()
            if on_file:
                out_path = Path(args.output) if args.output else None
                await call_from_file(
                    engine,
                    stack,
                    Path(args.input),
                    out_path,
                    listeners,
                    real_time=getattr(args, "real_time", False),
                )
            else:
                device_in = args.input_device or settings.voice.input_device
                device_out = args.output_device or settings.voice.output_device
                await call_on_sound_card(engine, stack, device_in, device_out, listeners)
        finally:
            if stack is not None:
                stack.close()
            engine.close()

    try:
        return _run_interruptible(run)
    except errors as exc:
        raise CliError(str(exc)) from exc
    finally:
        if operations is not None:
            operations.close()


def telephony_settings(settings: Settings, args: argparse.Namespace) -> Any:
    """The phone lines' settings: voicebot.yml's telephony section, then flags."""
    from bot.telephony.dialling import dial_target, host_port
    from bot.telephony.endpoint import TelephonySettings
    from bot.telephony.register import AccountError, parse_accounts

    tel = settings.telephony
    listen = getattr(args, "sip_listen", None) or tel.listen
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise CliError(f"--sip-listen / telephony.listen: expected HOST:PORT, got {listen!r}")
    lines = getattr(args, "lines", None) or tel.lines
    if lines < 1:
        raise CliError("--lines: at least one line")
    codecs = tuple(c.strip().upper() for c in tel.codecs.split(",") if c.strip())
    unknown = set(codecs) - {"G722", "PCMU", "PCMA"}
    if unknown or not codecs:
        raise CliError(f"telephony.codecs: known are G722, PCMU and PCMA, got {tel.codecs!r}")
    try:
        accounts = tuple(parse_accounts(tel.accounts, os.environ))
    except AccountError as exc:
        raise CliError(str(exc)) from exc
    transfer_to = str(settings.escalation.get("transfer_to") or "").strip()
    try:
        if tel.dial_via:
            host_port(tel.dial_via)
        if tel.caller_id:
            dial_target(tel.caller_id)
    except ValueError as exc:
        raise CliError(f"telephony.dial_via / telephony.caller_id: {exc}") from exc
    return TelephonySettings(
        host=host,
        port=int(port),
        lines=lines,
        media_address=tel.media_address,
        rtp_port_min=tel.rtp_port_min,
        rtp_port_max=tel.rtp_port_max,
        codecs=codecs,
        rtp_timeout_seconds=tel.rtp_timeout_seconds,
        answer_after_ms=tel.answer_after_ms,
        stop_grace_seconds=tel.stop_grace_seconds,
        accounts=accounts,
        transfer_to=transfer_to,
        dial_via=tel.dial_via.strip(),
        caller_id=tel.caller_id.strip(),
    )


def _cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Answers phone lines until Ctrl-C / SIGTERM; calls in progress finish."""
    from bot.call import CallEngine
    from bot.events import CallEvent
    from bot.telephony.endpoint import TelephonyError
    from bot.telephony.serve import LinePrinter, PhoneService, serve_forever
    from bot.voice import SpeechStack

    tel = telephony_settings(settings, args)
    printer: LinePrinter | None = None
    if args.json:
        out = json_stdout()

        def print_event(line: int, event: CallEvent) -> None:
            out.write(json.dumps({**event.to_dict(), "line": line}, ensure_ascii=False) + "\n")
            out.flush()

        printer = print_event
    settings = _with_overrides(settings, args)
    engine = CallEngine(settings)
    operations = _start_operations(settings, args, engine)
    if operations is not None:
        json_printer, record = printer, operations.record

        def count_and_print(line: int, event: CallEvent) -> None:
            record(event)
            if json_printer is not None:
                json_printer(line, event)

        printer = count_and_print

    async def run() -> None:
        stack = None
        try:
            engine.start()
            await engine.warm_up()
            stack = SpeechStack.load(settings, args.asr_model)
            service = PhoneService(engine, stack, tel, printer)
            if operations is not None:
                operations.mark_answering()
            print(
                f"voicebot: answering SIP calls on {tel.host}:{tel.port}, {tel.lines} line(s)",
                file=sys.stderr,
                flush=True,
            )
            await serve_forever(service)
        finally:
            if stack is not None:
                stack.close()
            engine.close()

    try:
        return _run_interruptible(run)
    except _voice_errors() + (TelephonyError,) as exc:
        raise CliError(str(exc)) from exc
    finally:
        if operations is not None:
            operations.close()


def _print_progress(event: object) -> None:
    """What a person at the sound card sees of the call."""
    from bot.events import (
        BotTurn,
        CallEnded,
        CallStarted,
        Escalated,
        SurveyAnswered,
        TranscriptFinal,
    )

    if isinstance(event, CallStarted):
        print(f"Call {event.call_id} answered. Speak; Ctrl-C hangs up.", file=sys.stderr)
    elif isinstance(event, TranscriptFinal):
        print(f"Caller: {event.text}  ({event.confidence:.2f})", file=sys.stderr)
    elif isinstance(event, BotTurn):
        print(f"Bot:    {' '.join(event.bot)}  [{event.intent}]", file=sys.stderr)
    elif isinstance(event, Escalated):
        print(f"[escalated: {event.reason}]", file=sys.stderr)
    elif isinstance(event, SurveyAnswered):
        print(f"[rated {event.score} out of 5 ({event.via})]", file=sys.stderr)
    elif isinstance(event, CallEnded):
        print(f"[call ended: {event.reason}; recording {event.recording_path}]", file=sys.stderr)


def _cmd_call(settings: Settings, args: argparse.Namespace) -> int:
    return _run_voice(settings, args, on_file=True)


def _cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    return _run_voice(settings, args, on_file=False)


def _cmd_devices(settings: Settings, args: argparse.Namespace) -> int:
    from bot.soundcard import AudioDeviceError, list_devices

    try:
        devices = list_devices()
    except AudioDeviceError as exc:
        raise CliError(str(exc)) from exc
    for d in devices:
        marks = ("<" if d.is_default_input else " ") + (">" if d.is_default_output else " ")
        print(
            f"{d.index:3d} {marks} {d.name}  (in {d.max_input_channels}, "
            f"out {d.max_output_channels}, {d.default_sample_rate_hz} Hz, {d.host_api})"
        )
    return 0


def _cmd_queue(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from bot.queue import AgentQueue

    queue = AgentQueue(settings.store_url)
    try:
        items = queue.waiting()
    finally:
        queue.close()
    for item in items:
        row = {
            "call_id": item.call_id,
            "kind": item.kind,
            "reason": item.reason,
            "priority": item.priority,
            "position": item.position,
            "waiting_seconds": round(item.waiting_seconds or 0.0, 1),
            "summary": item.summary,
        }
        if args.json:
            print(json.dumps(row, ensure_ascii=False))
        else:
            print(
                f"{item.position:3d}. [{item.kind} p{item.priority} {item.skill}] "
                f"{item.reason}, waiting {row['waiting_seconds']:.0f} s: {item.summary}"
            )
    return 0


def _cmd_agents(settings: Settings, args: argparse.Namespace) -> int:
    import getpass

    from bot.queue import AgentQueue, QueueError
    from bot.queue.accounts import AgentAccounts

    if args.agents_command != "add":
        return _cmd_agent_accounts(settings, args)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"Password for {args.name}: ")
        if password != getpass.getpass("Again: "):
            raise CliError("the passwords differ")
    if len(password) < 8:
        raise CliError("a password needs at least 8 characters")
    skills = [s.strip() for s in args.skills.split(",") if s.strip()]
    queue = AgentQueue(settings.store_url)
    try:
        agent = queue.add_agent(args.name, password, args.role, skills)
        accounts = AgentAccounts(queue.engine)
        accounts.create_tables()
        accounts.record("added", agent.name, agent.id, actor=_cli_actor(), detail=agent.role)
    except QueueError as exc:
        raise CliError(str(exc)) from exc
    finally:
        queue.close()
    print(f"{agent.name} ({agent.role}; skills {', '.join(agent.skills)}) can now log in")
    return 0


def _cli_actor() -> str:
    """Who made an account change from the command line, for the audit log."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (a container)
        return f"cli:uid {os.getuid()}"


def _cmd_agent_accounts(settings: Settings, args: argparse.Namespace) -> int:
    """``agents list|role|disable|enable|unlock|audit``: changes count at once in
    every console (open sessions and live streams included) and are audited."""
    from datetime import timedelta

    from bot.queue import AgentQueue, QueueError
    from bot.queue.accounts import AgentAccounts

    command, actor = args.agents_command, _cli_actor()
    queue = AgentQueue(settings.store_url)
    try:
        accounts = AgentAccounts(queue.engine)
        accounts.create_tables()
        if command == "list":
            for agent, disabled in accounts.accounts():
                mark = "  (disabled)" if disabled else ""
                print(f"{agent.name}  {agent.role}  skills {','.join(agent.skills)}{mark}")
        elif command == "role":
            agent, before = accounts.set_role(args.name, args.role, actor)
            same = before == agent.role
            print(f"{agent.name} is {agent.role}{' already' if same else f' (was {before})'}")
        elif command in ("disable", "enable"):
            agent, changed = accounts.set_disabled(args.name, command == "disable", actor)
            print(f"{agent.name} is {command}d{'' if changed else ' already'}")
        elif command == "unlock":
            lockout = timedelta(minutes=settings.console.login_lockout_minutes)
            was_locked = accounts.unlock(args.name, actor, lockout)
            print(f"{args.name} may log in again" if was_locked else f"{args.name} was not locked")
        elif command == "audit":
            for entry in reversed(accounts.audit(args.name, args.limit)):
                row = {**dataclasses.asdict(entry), "at": entry.at.isoformat()}
                line = " ".join(str(v) for k, v in row.items() if v not in (None, "") and k != "id")
                print(json.dumps(row, ensure_ascii=False) if args.json else line)
    except QueueError as exc:
        raise CliError(str(exc)) from exc
    finally:
        queue.close()
    return 0


def _cmd_console(settings: Settings, args: argparse.Namespace) -> int:
    from bot.console import run_console
    from bot.console.server import console_settings

    run_console(console_settings(settings, args.host, args.port))
    return 0


def _cmd_models(settings: Settings, args: argparse.Namespace) -> int:
    from bot.model_store import ModelError, data_fingerprint, list_models, train_model

    if args.models_command == "train":
        try:
            info = train_model(settings.project_dir, settings.models_dir, force=args.force)
        except ModelError as exc:
            raise CliError(str(exc)) from exc
        print(f"{info.path.relative_to(settings.project_dir)} (data {info.fingerprint})")
        return 0
    if args.models_command == "pull":
        from bot.speech.models import SpeechModelError, progress_bar, pull_model

        try:
            path = pull_model(
                args.language,
                settings.models_dir,
                size=args.size,
                base_url=args.base_url,
                progress=progress_bar(),
                expected_sha256=args.sha256,
                force=args.force,
            )
        except SpeechModelError as exc:
            raise CliError(str(exc)) from exc
        print(path)
        return 0
    if args.models_command == "list":
        current = data_fingerprint(settings.project_dir)
        for info in list_models(settings.models_dir):
            mark = "*" if info.fingerprint == current else " "
            print(f"{mark} {info.path.name}  trained {info.trained_at or 'unknown'}")
        return 0
    raise CliError("choose a models command: train or list")


def _cmd_privacy(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from bot.retention import RetentionError, purge_expired

    days = settings.privacy.retention_days if args.days is None else args.days
    out = json_stdout() if args.json else sys.stdout
    try:
        report = purge_expired(
            settings.store_url,
            settings.recordings_dir,
            days,
            audit_days=settings.privacy.audit_days,
        )
    except RetentionError as exc:
        raise CliError(str(exc)) from exc
    out.write((json.dumps(report.to_dict()) if args.json else report.summary()) + "\n")
    return 0


def _cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    from bot.reporting import ReportError, make_period, open_reports, report_text

    try:
        period = make_period(args.from_day, args.to_day, args.timezone)
        reports = open_reports(settings.store_url)
        try:
            from bot.console import ConsoleSettings  # its service level, after quick checks

            report = reports.report(period, ConsoleSettings.service_level_seconds)
        finally:
            reports.close()
    except ReportError as exc:
        raise CliError(str(exc)) from exc
    print(report.to_json() if args.json else report_text(report))
    return 0


def _cmd_train(settings: Settings, args: argparse.Namespace) -> int:
    try:
        return run_train_command(settings, args)
    except TrainCliError as exc:
        print(f"voicebot: error: {exc}", file=sys.stderr)
        return exc.code


def _add_engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--asr-model", help="a Vosk model folder (default: models/)")
    parser.add_argument("--model", help="dialogue model archive (default: the current one)")
    parser.add_argument("--actions-url", help="use this action server instead of starting one")
    parser.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve /metrics, /healthz and /readyz here (default: operations.listen)",
    )


def _start_operations(
    settings: Settings, args: argparse.Namespace, engine: Any, use_settings: bool = True
) -> Any:
    """The process's metrics and health listener (bot.ops.BotOperations), or
    None when neither --metrics-listen nor operations.listen asks for one."""
    from bot.ops import BotOperations, OperationsError, parse_listen

    listen = getattr(args, "metrics_listen", None) or (
        settings.operations.listen if use_settings else ""
    )
    name = "--metrics-listen / operations.listen"
    try:
        address = parse_listen(listen, name)
        if address is None:
            return None
        operations = BotOperations(engine)
        operations.listen(*address)
    except OperationsError as exc:
        message = str(exc)
        raise CliError(message if message.startswith(name) else f"{name}: {message}") from exc
    return operations


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voicebot", description="Offline call-centre voice bot for a customer hotline."
    )
    parser.add_argument("--version", action="version", version=f"voicebot {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    chat = sub.add_parser("chat", help="a text call through the call engine")
    chat.add_argument(
        "--json",
        action="store_true",
        help="read caller lines from stdin, write one JSON object per turn to stdout",
    )
    chat.add_argument("--model", help="dialogue model archive (default: the current one)")
    chat.add_argument("--actions-url", help="use this action server instead of starting one")
    chat.set_defaults(handler=_cmd_chat)

    call = sub.add_parser("call", help="a whole voice call from a caller's WAV file")
    call.add_argument("--in", dest="input", required=True, help="the caller's audio (WAV)")
    call.add_argument("--out", dest="output", help="write the bot's audio here (WAV)")
    call.add_argument("--json", action="store_true", help="print one event per line")
    call.add_argument(
        "--real-time",
        action="store_true",
        help="play the file at the pace of a live call (agents can join it from the console)",
    )
    _add_engine_options(call)
    call.set_defaults(handler=_cmd_call)

    run = sub.add_parser("run", help="answer a call on the sound card")
    run.add_argument("--input-device", help="microphone, by name or index")
    run.add_argument("--output-device", help="speaker, by name or index")
    run.add_argument("--json", action="store_true", help="print one event per line")
    _add_engine_options(run)
    run.set_defaults(handler=_cmd_run)

    serve = sub.add_parser("serve", help="answer phone lines (SIP) until Ctrl-C")
    serve.add_argument("--sip-listen", metavar="HOST:PORT", help="where PBXs and trunks send calls")
    serve.add_argument("--lines", type=int, help="simultaneous calls (more get 486 Busy Here)")
    serve.add_argument(
        "--json", action="store_true", help="print every call's events, one per line"
    )
    _add_engine_options(serve)
    serve.set_defaults(handler=_cmd_serve)

    devices = sub.add_parser("devices", help="list sound devices (< input, > output default)")
    devices.set_defaults(handler=_cmd_devices)

    queue = sub.add_parser("queue", help="the human-agent queue")
    queue_sub = queue.add_subparsers(dest="queue_command", required=True)
    listing = queue_sub.add_parser("list", help="waiting calls and callbacks, next first")
    listing.add_argument("--json", action="store_true", help="one JSON object per item")
    queue.set_defaults(handler=_cmd_queue)

    agents = sub.add_parser("agents", help="console accounts")
    agents_sub = agents.add_subparsers(dest="agents_command", required=True)
    add = agents_sub.add_parser("add", help="create an account (asks for its password)")
    add.add_argument("name")
    add.add_argument("--role", choices=["agent", "supervisor", "trainer", "admin"], required=True)
    add.add_argument("--skills", default="general,orders,billing", help="comma-separated")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    agents_sub.add_parser("list", help="accounts, their roles and skills; disabled ones marked")
    role = agents_sub.add_parser("role", help="give an account another role, at once")
    role.add_argument("name")
    role.add_argument("role", choices=["agent", "supervisor", "trainer", "admin"])
    for verb, text in (
        ("disable", "stop an account signing in; its open sessions end at once"),
        ("enable", "let a disabled account sign in again"),
        ("unlock", "lift a name's lockout after too many failed logins"),
    ):
        agents_sub.add_parser(verb, help=text).add_argument("name")
    audit = agents_sub.add_parser("audit", help="logins, lockouts and account changes")
    audit.add_argument("--name", help="only this name's")
    audit.add_argument("--limit", type=int, default=50, help="the newest this many (default 50)")
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    agents.set_defaults(handler=_cmd_agents)

    console = sub.add_parser("console", help="the agents' web console")
    console.add_argument("--host", default="127.0.0.1")
    console.add_argument("--port", type=int, default=8080)
    console.set_defaults(handler=_cmd_console)

    models = sub.add_parser("models", help="dialogue and speech models in models/")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    train = models_sub.add_parser("train", help="train a model unless one matches the data")
    train.add_argument("--force", action="store_true", help="train even if one matches")
    models_sub.add_parser("list", help="list models; * marks the current data's")
    pull = models_sub.add_parser("pull", help="download a Vosk speech model into models/")
    pull.add_argument("language", help="language, e.g. en-us")
    pull.add_argument("--size", choices=["small", "large"], default="small")
    pull.add_argument("--base-url", default=DEFAULT_MODEL_URL, help="a mirror of the models")
    pull.add_argument("--sha256", help="expected checksum of the archive")
    pull.add_argument("--force", action="store_true", help="download even if present")
    models.set_defaults(handler=_cmd_models)

    privacy = sub.add_parser("privacy", help="what callers said, and how long it is kept")
    privacy_sub = privacy.add_subparsers(dest="privacy_command", required=True)
    purge = privacy_sub.add_parser(
        "purge", help="delete expired recordings and scrub expired calls' personal details"
    )
    purge.add_argument("--days", type=int, help="keep this many days (default: the settings')")
    purge.add_argument("--json", action="store_true", help="print the report as JSON")
    privacy.set_defaults(handler=_cmd_privacy)

    report = sub.add_parser("report", help="calls, containment, escalations, agents, satisfaction")
    report.add_argument("--from", dest="from_day", metavar="DATE", help="first day (or today)")
    report.add_argument(
        "--to", dest="to_day", metavar="DATE", help="first day not counted (default: tomorrow)"
    )
    report.add_argument("--timezone", default="", help="IANA zone of the days (default: local)")
    report.add_argument("--json", action="store_true", help="print one JSON object")
    report.set_defaults(handler=_cmd_report)

    add_train_parser(sub, _cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:
        # Library deprecation notices mean nothing to a caller or an agent; the
        # action server (a child process) inherits the setting too.
        os.environ.setdefault("PYTHONWARNINGS", "ignore")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        warnings.simplefilter("ignore")
    try:
        settings = load_settings()
        setup_logging(
            settings.log_file,
            settings.logging.level,
            verbose=args.verbose,
            log_format=settings.logging.format,
        )
        if args.command not in _NO_DATABASE_COMMANDS:
            check_stores(settings, dialogue=args.command in _CALL_COMMANDS)
        return int(args.handler(settings, args))
    except (CliError, SettingsError) as exc:
        print(f"voicebot: error: {exc}", file=sys.stderr)
        return 2
    except UnreachableError as exc:
        print(f"voicebot: error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
