"""The agents' web console (FastAPI): live queue, calls, supervisor dashboard."""

from bot.console.app import ConsoleSettings, create_app
from bot.console.auth import ConsoleError
from bot.console.server import ConsoleServer, run_console

__all__ = ["ConsoleError", "ConsoleServer", "ConsoleSettings", "create_app", "run_console"]
