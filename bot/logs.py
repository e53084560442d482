"""Logging: details to the log file, problems to stderr, nothing to stdout."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import TextIO


def quiet_libraries() -> None:
    """Keeps TensorFlow's and Rasa's start-up chatter out of the terminal."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    for name in ("tensorflow", "absl", "rasa", "sanic", "asyncio", "urllib3", "matplotlib"):
        logging.getLogger(name).setLevel(logging.WARNING)


def setup_logging(log_file: Path | None, level: str = "INFO", verbose: bool = False) -> None:
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else getattr(logging, level.upper(), logging.INFO))
    for handler in list(root.handlers):
        root.removeHandler(handler)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO if verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(console)
    if log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            file_handler = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            root.warning("cannot write the log file %s: %s", log_file, exc)
        else:
            file_handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
            root.addHandler(file_handler)
    quiet_libraries()
    logging.getLogger("bot").setLevel(logging.DEBUG if verbose else logging.INFO)
    # Rasa reports failed custom actions at ERROR on this logger; the dialogue listens.
    logging.getLogger("rasa.core.processor").setLevel(logging.ERROR)


def json_stdout() -> TextIO:
    """Keeps stdout for JSON only: anything else written to fd 1 goes to stderr."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out
