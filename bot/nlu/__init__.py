"""Rule-based NLU helpers for speech-recognised caller text."""
