"""Vosk speech models: which ones exist, downloading them safely, finding the one to use.

A pull downloads into a temporary file inside the models folder, checks it
(HTTP status, length, optional sha256, zip CRCs, member paths, Vosk layout),
unpacks into a temporary folder beside it and renames that folder into place,
so ``models_dir/<name>`` is either a complete model or absent. Concurrent
pulls into one folder are serialised with a lock on the folder itself.
"""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import TextIO

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://alphacephei.com/vosk/models"
DEFAULT_SIZE = "small"
DEFAULT_TIMEOUT_SECONDS = 30.0
CHUNK_BYTES = 256 * 1024
BYTES_PER_MB = 1_000_000

# language -> size -> model name (also the zip's name and its top folder).
MODEL_REGISTRY: dict[str, dict[str, str]] = {
    "en-us": {
        "small": "vosk-model-small-en-us-0.15",
        "large": "vosk-model-en-us-0.22",
    },
}

# Prefixes of the temporaries a pull creates inside models_dir.
_TEMP_PREFIXES = (".download-", ".unpack-", ".replaced-", ".meta-")

Progress = Callable[[int, int | None], None]


class SpeechModelError(RuntimeError):
    """A speech model is unknown, missing, broken, or could not be downloaded."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ModelSpec:
    language: str
    size: str
    name: str

    def url(self, base_url: str = DEFAULT_BASE_URL) -> str:
        return f"{base_url.rstrip('/')}/{self.name}.zip"


def model_spec(language: str, size: str = DEFAULT_SIZE) -> ModelSpec:
    """The registry entry for a language and size, or SpeechModelError naming the choices."""
    sizes = MODEL_REGISTRY.get(language)
    if sizes is None:
        known = ", ".join(sorted(MODEL_REGISTRY))
        raise SpeechModelError(
            "unknown_language", f"no speech model for language {language!r}; known: {known}"
        )
    name = sizes.get(size)
    if name is None:
        raise SpeechModelError(
            "unknown_size",
            f"no {size!r} speech model for {language}; sizes: {', '.join(sorted(sizes))}",
        )
    return ModelSpec(language=language, size=size, name=name)


def missing_vosk_files(path: Path) -> list[str]:
    """What ``path`` lacks to be a Vosk model folder (empty when it is one)."""
    if not path.is_dir():
        return [f"{path} (not a folder)"]
    missing = [rel for rel in ("am/final.mdl", "conf/model.conf") if not (path / rel).is_file()]
    graph = path / "graph"
    has_static_graph = (graph / "HCLG.fst").is_file()
    has_lookahead_graph = (graph / "HCLr.fst").is_file() and (graph / "Gr.fst").is_file()
    if not (has_static_graph or has_lookahead_graph):
        missing.append("graph/HCLG.fst (or graph/HCLr.fst and graph/Gr.fst)")
    return missing


def is_vosk_model(path: Path) -> bool:
    return not missing_vosk_files(Path(path))


def _installed(models_dir: Path, name: str) -> Path | None:
    candidate = models_dir / name
    return candidate if is_vosk_model(candidate) else None


def resolve_asr_model(explicit: Path | None, models_dir: Path, language: str = "en-us") -> Path:
    """The Vosk model to load: ``explicit``, else the installed one chosen for ``language``.

    Among installed models the one named in ``models_dir/<language>.current``
    wins, then the small one, then the large one.
    """
    if explicit is not None:
        missing = missing_vosk_files(explicit)
        if missing:
            raise SpeechModelError(
                "invalid_model",
                f"--asr-model {explicit} is not a Vosk model: missing {', '.join(missing)}",
            )
        return explicit
    current_file = models_dir / f"{language}.current"
    if current_file.is_file():
        chosen = current_file.read_text(encoding="utf-8").strip()
        missing = missing_vosk_files(models_dir / chosen)
        if not chosen or missing:
            raise SpeechModelError(
                "invalid_model",
                f"{current_file} names {chosen!r}, which is not a Vosk model in {models_dir}"
                f" (missing {', '.join(missing) or 'a name'}); fix or delete that file,"
                f" or run `voicebot models pull {language}`",
            )
        return models_dir / chosen
    for size in ("small", "large"):
        name = MODEL_REGISTRY.get(language, {}).get(size)
        found = _installed(models_dir, name) if name else None
        if found is not None:
            return found
    raise SpeechModelError(
        "no_model",
        f"no {language} speech model in {models_dir}: run `voicebot models pull {language}`"
        " to download one, or pass --asr-model PATH to use a Vosk model folder",
    )


def pull_model(
    language: str,
    models_dir: Path,
    size: str = DEFAULT_SIZE,
    base_url: str = DEFAULT_BASE_URL,
    progress: Progress | None = None,
    expected_sha256: str | None = None,
    force: bool = False,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> Path:
    """Download and install a Vosk model into ``models_dir/<name>``; returns that folder.

    An installed valid model is returned without downloading unless ``force``.
    ``progress`` gets (bytes done, bytes total or None) per chunk and a last
    call with done == total. Any failure, Ctrl-C included, removes every
    temporary and raises SpeechModelError; a previously installed model stays.
    """
    spec = model_spec(language, size)
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / spec.name
    with _folder_lock(models_dir):
        if not force and is_vosk_model(target):
            log.info("speech model %s already installed at %s", spec.name, target)
            return target
        _remove_stale_temporaries(models_dir)
        url = spec.url(base_url)
        temporaries: list[Path] = []
        try:
            archive = _new_temp_file(models_dir, ".download-", ".zip", temporaries)
            size_bytes, sha256 = _download(url, archive, progress, timeout_seconds)
            if expected_sha256 is not None and sha256 != expected_sha256.strip().lower():
                raise SpeechModelError(
                    "checksum",
                    f"sha256 of {url} is {sha256}, expected {expected_sha256}",
                )
            unpack_dir = Path(tempfile.mkdtemp(prefix=".unpack-", dir=models_dir))
            temporaries.append(unpack_dir)
            model_root = _unpack(archive, unpack_dir, url)
            meta = _new_temp_file(models_dir, ".meta-", ".json", temporaries)
            meta.write_text(
                json.dumps(
                    {
                        "name": spec.name,
                        "language": spec.language,
                        "size": spec.size,
                        "url": url,
                        "size_bytes": size_bytes,
                        "sha256": sha256,
                        "downloaded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    },
                    indent=2,
                )
                + "\n",
                encoding="utf-8",
            )
            _move_into_place(model_root, target, temporaries)
            os.replace(meta, models_dir / f"{spec.name}.json")
        except KeyboardInterrupt as exc:
            raise SpeechModelError("interrupted", f"download of {url} interrupted") from exc
        except OSError as exc:
            raise SpeechModelError("io", f"installing {url} into {models_dir}: {exc}") from exc
        finally:
            for temporary in temporaries:
                _remove(temporary)
    log.info("speech model %s installed at %s (%d bytes)", spec.name, target, size_bytes)
    return target


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    # flock on the folder itself, so the lock leaves no file behind.
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _remove_stale_temporaries(models_dir: Path) -> None:
    # Called under the lock: any temporary present belongs to a pull that was killed.
    for entry in models_dir.iterdir():
        if entry.name.startswith(_TEMP_PREFIXES):
            log.warning("removing %s left by an interrupted pull", entry)
            _remove(entry)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with suppress(FileNotFoundError):
            path.unlink()


def _new_temp_file(folder: Path, prefix: str, suffix: str, temporaries: list[Path]) -> Path:
    descriptor, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    os.close(descriptor)
    temporaries.append(Path(name))
    return Path(name)


def _download(
    url: str, destination: Path, progress: Progress | None, timeout_seconds: float
) -> tuple[int, str]:
    """Streams ``url`` into ``destination``; returns (bytes, sha256 hex)."""
    digest = hashlib.sha256()
    done_bytes = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout_seconds) as response:
            status = getattr(response, "status", None)
            # file:// mirrors have no status; anything but 200 from HTTP is not the archive.
            if status is not None and status != 200:
                raise SpeechModelError("http_status", f"GET {url} answered HTTP {status}")
            length_header = response.headers.get("Content-Length")
            total_bytes = int(length_header) if length_header and length_header.isdigit() else None
            if progress is not None:
                progress(0, total_bytes)
            with open(destination, "wb") as out:
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    done_bytes += len(chunk)
                    if progress is not None:
                        progress(done_bytes, total_bytes)
    except urllib.error.HTTPError as exc:
        raise SpeechModelError("http_status", f"GET {url} answered HTTP {exc.code}") from exc
    except urllib.error.URLError as exc:
        raise SpeechModelError("network", f"cannot download {url}: {exc.reason}") from exc
    except (http.client.HTTPException, TimeoutError, ConnectionError) as exc:
        raise SpeechModelError(
            "network", f"download of {url} failed after {done_bytes} bytes: {exc!r}"
        ) from exc
    if total_bytes is not None and done_bytes != total_bytes:
        raise SpeechModelError(
            "truncated",
            f"download of {url} is incomplete: got {done_bytes} of {total_bytes} bytes",
        )
    if progress is not None:
        progress(done_bytes, done_bytes)
    return done_bytes, digest.hexdigest()


def _unsafe_member(name: str) -> bool:
    path = PurePosixPath(name.replace("\\", "/"))
    has_drive = len(name) >= 2 and name[1] == ":"
    return path.is_absolute() or has_drive or ".." in path.parts


def _unpack(archive: Path, unpack_dir: Path, url: str) -> Path:
    """Checks and extracts the zip; returns the folder inside ``unpack_dir`` holding the model."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            unsafe = [name for name in zipped.namelist() if _unsafe_member(name)]
            if unsafe:
                raise SpeechModelError(
                    "unsafe_path", f"{url} has members outside its folder: {unsafe[:3]}"
                )
            broken = zipped.testzip()
            if broken is not None:
                raise SpeechModelError("bad_zip", f"{url} is corrupt: bad CRC in {broken}")
            needed_bytes = sum(info.file_size for info in zipped.infolist())
            free_bytes = shutil.disk_usage(unpack_dir).free
            if needed_bytes > free_bytes:
                raise SpeechModelError(
                    "no_space",
                    f"{url} unpacks to {needed_bytes / BYTES_PER_MB:.0f} MB but only"
                    f" {free_bytes / BYTES_PER_MB:.0f} MB are free in {unpack_dir.parent}",
                )
            zipped.extractall(unpack_dir)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise SpeechModelError("bad_zip", f"{url} is not a readable zip: {exc}") from exc
    # Archives from alphacephei hold one top folder named like the model; accept a flat one too.
    entries = [entry for entry in unpack_dir.iterdir() if entry.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir() and not is_vosk_model(unpack_dir):
        model_root = entries[0]
    else:
        model_root = unpack_dir
    missing = missing_vosk_files(model_root)
    if missing:
        raise SpeechModelError(
            "bad_layout", f"{url} does not hold a Vosk model: missing {', '.join(missing)}"
        )
    return model_root


def _move_into_place(model_root: Path, target: Path, temporaries: list[Path]) -> None:
    """Renames ``model_root`` to ``target``, swapping out whatever was there."""
    if target.exists() or target.is_symlink():
        replaced = Path(tempfile.mkdtemp(prefix=".replaced-", dir=target.parent))
        os.rename(target, replaced / target.name)
        temporaries.append(replaced)
        try:
            os.rename(model_root, target)
        except BaseException:
            os.rename(replaced / target.name, target)
            raise
    else:
        os.rename(model_root, target)


def progress_bar(
    stream: TextIO | None = None,
    min_interval_seconds: float = 0.1,
    clock: Callable[[], float] = time.monotonic,
) -> Progress:
    """A progress callable that redraws one terminal line: bar, percent, MB done/total.

    ``stream`` defaults to sys.stderr at call time. Redraws at most once per
    ``min_interval_seconds``, except the final one (done == total), which ends
    the line.
    """
    out = stream if stream is not None else sys.stderr
    last_drawn_at: float | None = None
    last_width = 0
    finished = False

    def draw(done_bytes: int, total_bytes: int | None) -> None:
        nonlocal last_drawn_at, last_width, finished
        if finished:
            return
        now = clock()
        is_final = total_bytes is not None and done_bytes >= total_bytes
        throttled = last_drawn_at is not None and now - last_drawn_at < min_interval_seconds
        if throttled and not is_final:
            return
        last_drawn_at = now
        done_mb = done_bytes / BYTES_PER_MB
        if total_bytes:
            fraction = min(done_bytes / total_bytes, 1.0)
            filled = int(fraction * 30)
            text = (
                f"[{'#' * filled}{'.' * (30 - filled)}] {fraction * 100:3.0f}%"
                f" {done_mb:.1f}/{total_bytes / BYTES_PER_MB:.1f} MB"
            )
        else:
            text = f"{done_mb:.1f} MB"
        out.write("\r" + text + " " * max(0, last_width - len(text)))
        last_width = len(text)
        if is_final:
            out.write("\n")
            finished = True
        out.flush()

    return draw
