"""Trained Rasa models in ``models/``: named by the fingerprint of their data.

A model is trained once per fingerprint of the files that shape it (Rasa's
config, domain, training data and the custom NLU component's code); running
``voicebot models train`` again with unchanged files does nothing, without
importing Rasa.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger(__name__)

MODEL_PREFIX = "dialogue-"
MODEL_SUFFIX = ".tar.gz"
FINGERPRINT_CHARS = 16


class ModelError(RuntimeError):
    """No usable dialogue model, or training failed."""


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    fingerprint: str
    trained_at: str
    train_seconds: float
    # Everything the metadata file holds: who trained it, its evaluation...
    meta: dict[str, object] = field(default_factory=dict, compare=False)

    @property
    def name(self) -> str:
        return self.path.name[: -len(MODEL_SUFFIX)]


def _fingerprint_files(project_dir: Path) -> Iterator[Path]:
    for name in ("config.yml", "domain.yml"):
        if (project_dir / name).is_file():
            yield project_dir / name
    for folder in ("domain", "data", "bot/nlu"):
        root = project_dir / folder
        if root.is_dir():
            yield from (p for p in sorted(root.rglob("*")) if p.suffix in {".yml", ".yaml", ".py"})


def data_fingerprint(project_dir: Path) -> str:
    """A hash of every file that changes what a trained model does."""
    digest = hashlib.sha256()
    for path in _fingerprint_files(project_dir):
        digest.update(str(path.relative_to(project_dir)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:FINGERPRINT_CHARS]


def _meta_path(archive: Path) -> Path:
    return archive.with_name(archive.name[: -len(MODEL_SUFFIX)] + ".json")


def _read_info(archive: Path) -> ModelInfo:
    meta_path = _meta_path(archive)
    meta: dict[str, object] = {}
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("unreadable model metadata %s", meta_path)
    fingerprint = str(meta.get("fingerprint") or archive.name[len(MODEL_PREFIX) :].split(".")[0])
    trained_at = str(meta.get("trained_at") or "")
    seconds = meta.get("train_seconds")
    return ModelInfo(
        archive,
        fingerprint,
        trained_at,
        float(seconds) if isinstance(seconds, int | float) else 0.0,
        meta,
    )


def model_path(models_dir: Path, name: str) -> Path:
    """The archive of a model named ``dialogue-<fingerprint>`` (or given with its suffix)."""
    name = name[: -len(MODEL_SUFFIX)] if name.endswith(MODEL_SUFFIX) else name
    if "/" in name or not name.startswith(MODEL_PREFIX):
        raise ModelError(f"{name!r} is not a model name (they look like dialogue-0123abcd...)")
    return models_dir / f"{name}{MODEL_SUFFIX}"


def model_info(models_dir: Path, name: str) -> ModelInfo:
    path = model_path(models_dir, name)
    if not path.is_file():
        known = ", ".join(info.name for info in list_models(models_dir)) or "none"
        raise ModelError(f"no model {name} in {models_dir} (there are: {known})")
    return _read_info(path)


def update_metadata(models_dir: Path, name: str, values: dict[str, object]) -> ModelInfo:
    """Merges ``values`` into a model's metadata file (written atomically;
    concurrent updates wait for each other)."""
    with open(models_dir / ".metadata.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = model_info(models_dir, name)
        meta = {**info.meta, **values}
        meta.setdefault("fingerprint", info.fingerprint)
        target = _meta_path(info.path)
        handle, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=models_dir)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, target)
        return _read_info(info.path)


def list_models(models_dir: Path) -> list[ModelInfo]:
    """Dialogue models, newest first."""
    if not models_dir.is_dir():
        return []
    archives = sorted(
        models_dir.glob(f"{MODEL_PREFIX}*{MODEL_SUFFIX}"),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    return [_read_info(p) for p in archives]


def model_for_fingerprint(models_dir: Path, fingerprint: str) -> Path | None:
    path = models_dir / f"{MODEL_PREFIX}{fingerprint}{MODEL_SUFFIX}"
    return path if path.is_file() else None


def resolve_model(project_dir: Path, models_dir: Path, explicit: str = "") -> Path:
    """The model a call should use: the one asked for, else the current data's, else the newest."""
    if explicit:
        path = Path(explicit)
        path = path if path.is_absolute() else project_dir / path
        if not path.is_file():
            raise ModelError(f"dialogue model {path} does not exist")
        return path
    current = model_for_fingerprint(models_dir, data_fingerprint(project_dir))
    if current:
        return current
    models = list_models(models_dir)
    if models:
        log.warning(
            "no model matches the current training data; using %s. "
            "Run `voicebot models train` to train one.",
            models[0].path.name,
        )
        return models[0].path
    raise ModelError(
        f"no trained dialogue model in {models_dir}. Run `voicebot models train` "
        "(or `make run`, which trains one)."
    )


def train_model(
    project_dir: Path,
    models_dir: Path,
    force: bool = False,
    trained_by: str = "",
    on_output: Callable[[str], None] | None = None,
) -> ModelInfo:
    """Trains a model for the current data unless one exists; returns its info.

    ``on_output`` receives Rasa's output line by line (progress bars included);
    without it the output goes to our stderr."""
    models_dir.mkdir(parents=True, exist_ok=True)
    with open(models_dir / ".train.lock", "w") as lock:
        # Two processes asked to train the same data at once: the second waits
        # and then finds the first one's model.
        fcntl.flock(lock, fcntl.LOCK_EX)
        fingerprint = data_fingerprint(project_dir)
        existing = model_for_fingerprint(models_dir, fingerprint)
        if existing and not force:
            return _read_info(existing)
        return _run_rasa_train(project_dir, models_dir, fingerprint, trained_by, on_output)


def _run_command(
    command: list[str], cwd: Path, env: dict[str, str], on_output: Callable[[str], None] | None
) -> int:
    if on_output is None:
        # Rasa prints progress on stdout; it belongs on our stderr.
        result = subprocess.run(
            command, cwd=cwd, stdout=sys.stderr, stderr=sys.stderr, env=env, check=False
        )
        return result.returncode
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0
    )
    assert process.stdout is not None
    pending = b""
    # Progress bars redraw with carriage returns: each redraw is a line here.
    while chunk := process.stdout.read(4096):
        pending += chunk
        *lines, pending = re.split(rb"[\r\n]", pending)
        for line in lines:
            if line.strip():
                on_output(line.decode("utf-8", "replace"))
    if pending.strip():
        on_output(pending.decode("utf-8", "replace"))
    return process.wait()


def _run_rasa_train(
    project_dir: Path,
    models_dir: Path,
    fingerprint: str,
    trained_by: str = "",
    on_output: Callable[[str], None] | None = None,
) -> ModelInfo:
    name = f"{MODEL_PREFIX}{fingerprint}"
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".training-") as tmp:
        command = [
            sys.executable, "-m", "rasa", "train",
            "--config", "config.yml", "--domain", _domain_arg(project_dir), "--data", "data",
            "--out", tmp, "--fixed-model-name", name,
        ]  # fmt: skip
        log.info("training dialogue model %s", name)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        returncode = _run_command(command, project_dir, env, on_output)
        produced = Path(tmp) / f"{name}{MODEL_SUFFIX}"
        if returncode != 0 or not produced.is_file():
            raise ModelError(
                f"rasa train failed (exit code {returncode}); its output is above. "
                "Fix the training data (`rasa data validate` names problems) and retry."
            )
        seconds = round(time.monotonic() - started, 1)
        meta = {
            "fingerprint": fingerprint,
            "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "train_seconds": seconds,
            "trained_by": trained_by or "make",
        }
        target = models_dir / produced.name
        meta_path = models_dir / f"{name}.json"
        meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        # Rename within one filesystem is atomic: no reader sees half a model.
        shutil.move(str(produced), str(target))
    log.info("trained %s in %.0f s", target.name, seconds)
    return _read_info(target)


def _domain_arg(project_dir: Path) -> str:
    return "domain" if (project_dir / "domain").is_dir() else "domain.yml"
