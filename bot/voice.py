"""Putting a voice call together: speech engines, channel, session.

One ``SpeechStack`` per process holds what calls share (the Vosk model, the
synthesiser); each call gets its own recogniser, voice activity detector,
segmenter and, on a sound card, echo gate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bot.call import Call, CallEngine
from bot.events import EventListener
from bot.file_channel import FileChannel, read_wav_16k, write_wav
from bot.session import (
    CallbackStart,
    CallSession,
    Channel,
    Recogniser,
    TurnDetector,
    TurnSettings,
    VoiceSettings,
)
from bot.settings import Settings
from bot.speech.tts import Synthesiser, TtsSettings
from bot.speech.vad import VadSettings, VoiceActivityDetector

log = logging.getLogger(__name__)

RecogniserFactory = Callable[[], Recogniser]


def voice_settings(settings: Settings) -> VoiceSettings:
    voice = settings.voice
    return VoiceSettings(
        silence_reprompt_seconds=voice.silence_reprompt_seconds,
        max_reprompts=voice.max_reprompts,
        max_call_seconds=voice.max_call_seconds,
        low_confidence=voice.low_confidence,
        barge_in=voice.barge_in,
        hold_announce_seconds=voice.hold_announce_seconds,
        callback_offer_seconds=voice.callback_offer_seconds,
    )


def turn_settings(settings: Settings) -> TurnSettings:
    voice = settings.voice
    return TurnSettings(
        complete_silence_ms=voice.complete_turn_silence_ms,
        open_silence_ms=voice.end_of_utterance_silence_ms,
        trailing_silence_ms=voice.trailing_words_silence_ms,
    )


def recogniser_endpoint_ms(settings: Settings) -> int:
    """The recogniser's own end of utterance: later than the turn detector's
    longest wait, so it only ever ends a turn the detector has not."""
    return settings.voice.trailing_words_silence_ms + 300


def load_recogniser_factory(settings: Settings, asr_model: str | None = None) -> RecogniserFactory:
    """Loads the Vosk model once; the factory makes one recogniser per call."""
    from bot.speech.asr import AsrModel, AsrSettings
    from bot.speech.models import resolve_asr_model

    explicit = asr_model or settings.voice.asr_model
    path = resolve_asr_model(
        Path(explicit) if explicit else None, settings.models_dir, settings.voice.language
    )
    endpoint_ms = recogniser_endpoint_ms(settings)
    asr_settings = AsrSettings(
        end_of_utterance_silence_ms=endpoint_ms,
        uncertain_end_silence_ms=max(endpoint_ms, AsrSettings.uncertain_end_silence_ms),
        low_confidence=settings.voice.low_confidence,
    )
    model = AsrModel(path, asr_settings, settings.var_dir / "asr-models")
    model.load()
    return model.new_recogniser


@dataclass
class SpeechStack:
    new_recogniser: RecogniserFactory
    synthesiser: Synthesiser
    settings: Settings
    hold_pcm: bytes | None = None

    @classmethod
    def load(
        cls,
        settings: Settings,
        asr_model: str | None = None,
        new_recogniser: RecogniserFactory | None = None,
    ) -> SpeechStack:
        voice = settings.voice
        synthesiser = Synthesiser(
            TtsSettings(
                voice=voice.tts_voice,
                rate_wpm=voice.tts_rate_wpm,
                volume=voice.tts_volume,
                cache_dir=settings.var_dir / "tts-cache",
            )
        )
        synthesiser.start()
        factory = new_recogniser or load_recogniser_factory(settings, asr_model)
        hold_path = settings.project_dir / settings.voice.hold_audio
        hold_pcm = read_wav_16k(hold_path) if settings.voice.hold_audio else None
        return cls(factory, synthesiser, settings, hold_pcm)

    def close(self) -> None:
        self.synthesiser.close()

    def session(
        self,
        engine: CallEngine,
        channel: Channel,
        listeners: list[EventListener] | None = None,
        echo_gate: bool = False,
        callback: CallbackStart | None = None,
    ) -> CallSession:
        voice = self.settings.voice
        echo = None
        detector = VoiceActivityDetector(VadSettings(aggressiveness=voice.vad_aggressiveness))
        if echo_gate:
            from bot.speech.echo import EchoGate

            echo = EchoGate(detector)
        return CallSession(
            engine=engine,
            channel=channel,
            recogniser=self.new_recogniser(),
            speaker=self.synthesiser,
            detector=detector,
            turns=TurnDetector(turn_settings(self.settings)),
            settings=voice_settings(self.settings),
            echo=echo,
            recordings_dir=self.settings.recordings_dir,
            listeners=listeners,
            hold_pcm=self.hold_pcm,
            agent_recogniser=self.new_recogniser,
            callback=callback,
        )


async def call_from_file(
    engine: CallEngine,
    stack: SpeechStack,
    caller_wav: Path,
    bot_wav: Path | None = None,
    listeners: list[EventListener] | None = None,
    real_time: bool = False,
) -> Call:
    """A whole call with the caller's audio from a file, faster than real time
    unless ``real_time``."""
    channel = FileChannel.from_wav(caller_wav, real_time=real_time)
    session = stack.session(engine, channel, listeners)
    try:
        call = await session.run()
    finally:
        await channel.close()
    if bot_wav is not None:
        write_wav(bot_wav, channel.bot_track())
    return call


async def call_on_sound_card(
    engine: CallEngine,
    stack: SpeechStack,
    input_device: str | None,
    output_device: str | None,
    listeners: list[EventListener] | None = None,
) -> Call:
    """Answers one call on the sound card; Ctrl-C hangs up and saves everything."""
    from bot.soundcard import SoundCardChannel, SoundCardSettings

    channel = SoundCardChannel(
        SoundCardSettings(input_device=input_device or "", output_device=output_device or "")
    )
    await channel.start()
    try:
        session = stack.session(engine, channel, listeners, echo_gate=True)
        return await session.run()
    finally:
        await asyncio.shield(channel.close())
