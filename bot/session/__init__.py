"""A voice call as small stages (see ``call_session.py`` for how they meet)."""

from bot.session.call_session import CallbackStart, CallSession
from bot.session.contracts import Channel, Recogniser, Speaker, VoiceSettings
from bot.session.turns import TurnDetector, TurnSettings

__all__ = [
    "CallSession",
    "CallbackStart",
    "Channel",
    "Recogniser",
    "Speaker",
    "TurnDetector",
    "TurnSettings",
    "VoiceSettings",
]
