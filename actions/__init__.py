"""Custom actions and the demo backend of the hotline voice bot.

Run with ``python -m rasa_sdk --actions actions``. The rasa_sdk executor
imports every module here and registers each concrete Action subclass.
"""
