"""Offline call-centre voice bot: Vosk hears, Rasa converses, pyttsx3 speaks."""

__version__ = "0.1.0"
