"""Speech in and out: Vosk recognition, voice activity, pyttsx3 synthesis, models."""
