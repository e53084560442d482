"""The domain responses the voicebot speaks itself, outside the dialogue's
own predictions (the greeting, reprompts, the hold line, failures).

Each name must exist in ``domain.yml``; a test checks that it does.
"""

from __future__ import annotations

import enum


class Response(str, enum.Enum):
    GREET = "utter_greet"
    ASK_AGAIN = "utter_ask_again"
    NOTHING_HEARD = "utter_nothing_heard"
    STILL_THERE = "utter_still_there"
    SILENCE_GOODBYE = "utter_silence_goodbye"
    CALL_TIME_LIMIT = "utter_call_time_limit"
    ESCALATE_REPEATED_FALLBACK = "utter_escalate_repeated_fallback"
    ESCALATE_ACTION_FAILURE = "utter_escalate_action_failure"
    QUEUE_POSITION = "utter_queue_position"
    QUEUE_UNAVAILABLE = "utter_queue_unavailable"
    AGENT_JOINED = "utter_agent_joined"
    AGENT_FINISHED = "utter_agent_finished"
    BACK_WITH_BOT = "utter_back_with_bot"
    OFFER_CALLBACK = "utter_offer_callback"
    CALLBACK_ARRANGED = "utter_callback_arranged"
    KEEP_WAITING = "utter_keep_waiting"
