"""Speech model registry, Vosk layout checks, model resolution and the progress bar."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bot.speech.models import (
    DEFAULT_BASE_URL,
    SpeechModelError,
    is_vosk_model,
    missing_vosk_files,
    model_spec,
    progress_bar,
    resolve_asr_model,
)

SMALL = "vosk-model-small-en-us-0.15"
LARGE = "vosk-model-en-us-0.22"


def make_model_folder(root: Path, graph: str = "static", skip: tuple[str, ...] = ()) -> Path:
    """A folder with Vosk's file layout and tiny placeholder files (not a loadable model)."""
    files = ["am/final.mdl", "conf/model.conf", "conf/mfcc.conf"]
    files += ["graph/HCLG.fst"] if graph == "static" else ["graph/HCLr.fst", "graph/Gr.fst"]
    for rel in files:
        if rel in skip:
            continue
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    return root


def test_static_and_lookahead_graph_layouts_are_models(tmp_path: Path) -> None:
    assert is_vosk_model(make_model_folder(tmp_path / "static"))
    assert is_vosk_model(make_model_folder(tmp_path / "lookahead", graph="lookahead"))


@pytest.mark.parametrize(
    ("graph", "skip", "named"),
    [
        ("static", ("am/final.mdl",), "am/final.mdl"),
        ("static", ("conf/model.conf",), "conf/model.conf"),
        ("static", ("graph/HCLG.fst",), "graph/HCLG.fst"),
        ("lookahead", ("graph/Gr.fst",), "graph/HCLr.fst and graph/Gr.fst"),
    ],
)
def test_a_missing_file_is_named(
    tmp_path: Path, graph: str, skip: tuple[str, ...], named: str
) -> None:
    folder = make_model_folder(tmp_path / "m", graph=graph, skip=skip)
    assert not is_vosk_model(folder)
    missing = missing_vosk_files(folder)
    assert len(missing) == 1
    assert named in missing[0]


def test_a_file_or_an_absent_path_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert not is_vosk_model(tmp_path / "file")
    assert not is_vosk_model(tmp_path / "absent")
    assert missing_vosk_files(tmp_path / "absent") == [f"{tmp_path / 'absent'} (not a folder)"]
    assert len(missing_vosk_files(tmp_path)) == 3


def test_registry_names_and_urls() -> None:
    assert model_spec("en-us").name == SMALL
    assert model_spec("en-us", "large").name == LARGE
    assert model_spec("en-us").url() == f"{DEFAULT_BASE_URL}/{SMALL}.zip"
    assert model_spec("en-us", "large").url("http://mirror/x/") == f"http://mirror/x/{LARGE}.zip"


def test_unknown_language_and_size_are_errors_naming_the_choices() -> None:
    with pytest.raises(SpeechModelError) as language_error:
        model_spec("xx-yy")
    assert language_error.value.code == "unknown_language"
    assert "en-us" in language_error.value.message
    with pytest.raises(SpeechModelError) as size_error:
        model_spec("en-us", "huge")
    assert size_error.value.code == "unknown_size"
    assert "large, small" in size_error.value.message


def test_explicit_model_wins_over_installed_ones(tmp_path: Path) -> None:
    make_model_folder(tmp_path / "models" / SMALL)
    explicit = make_model_folder(tmp_path / "mine")
    assert resolve_asr_model(explicit, tmp_path / "models") == explicit


def test_explicit_path_that_is_not_a_model_names_what_is_missing(tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path / "mine", skip=("am/final.mdl",))
    make_model_folder(tmp_path / "models" / SMALL)
    with pytest.raises(SpeechModelError) as error:
        resolve_asr_model(folder, tmp_path / "models")
    assert error.value.code == "invalid_model"
    assert str(folder) in error.value.message
    assert "am/final.mdl" in error.value.message
    assert "conf/model.conf" not in error.value.message


def test_small_is_preferred_then_large(tmp_path: Path) -> None:
    models = tmp_path / "models"
    make_model_folder(models / LARGE)
    assert resolve_asr_model(None, models) == models / LARGE
    make_model_folder(models / SMALL)
    assert resolve_asr_model(None, models) == models / SMALL


def test_a_broken_small_model_folder_is_passed_over(tmp_path: Path) -> None:
    models = tmp_path / "models"
    make_model_folder(models / SMALL, skip=("graph/HCLG.fst",))
    make_model_folder(models / LARGE)
    assert resolve_asr_model(None, models) == models / LARGE


def test_current_file_chooses_among_installed_models(tmp_path: Path) -> None:
    models = tmp_path / "models"
    make_model_folder(models / SMALL)
    make_model_folder(models / "custom-en")
    (models / "en-us.current").write_text("custom-en\n")
    assert resolve_asr_model(None, models) == models / "custom-en"
    (models / "en-us.current").unlink()
    assert resolve_asr_model(None, models) == models / SMALL


def test_current_file_is_per_language(tmp_path: Path) -> None:
    models = tmp_path / "models"
    make_model_folder(models / "modele-fr")
    (models / "en-us.current").write_text("modele-fr")
    with pytest.raises(SpeechModelError) as error:
        resolve_asr_model(None, models, language="fr")
    assert "voicebot models pull fr" in error.value.message
    (models / "fr.current").write_text("modele-fr")
    assert resolve_asr_model(None, models, language="fr") == models / "modele-fr"


def test_current_file_naming_a_missing_model_is_an_error(tmp_path: Path) -> None:
    models = tmp_path / "models"
    make_model_folder(models / SMALL)
    (models / "en-us.current").write_text(LARGE)
    with pytest.raises(SpeechModelError) as error:
        resolve_asr_model(None, models)
    assert error.value.code == "invalid_model"
    assert "en-us.current" in error.value.message
    assert LARGE in error.value.message


def test_no_model_names_the_pull_command_and_the_option(tmp_path: Path) -> None:
    with pytest.raises(SpeechModelError) as error:
        resolve_asr_model(None, tmp_path / "absent")
    assert error.value.code == "no_model"
    assert "voicebot models pull en-us" in error.value.message
    assert "--asr-model PATH" in error.value.message
    assert str(tmp_path / "absent") in error.value.message


class SteppedClock:
    """Hand-set time, so throttling is tested without waiting."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds


def test_progress_bar_draws_percent_and_megabytes_and_throttles() -> None:
    out = io.StringIO()
    clock = SteppedClock()
    bar = progress_bar(out, min_interval_seconds=0.1, clock=clock)
    bar(0, 40_000_000)
    for step in range(1, 100):  # same instant: all throttled
        bar(step * 1000, 40_000_000)
    clock.seconds = 0.15
    bar(10_000_000, 40_000_000)
    bar(40_000_000, 40_000_000)  # the final draw is never throttled
    bar(40_000_000, 40_000_000)  # nothing after the end
    frames = out.getvalue().split("\r")[1:]
    assert len(frames) == 3
    assert "  0% 0.0/40.0 MB" in frames[0]
    assert " 25% 10.0/40.0 MB" in frames[1]
    assert frames[1].startswith("[" + "#" * 7 + "." * 23 + "]")
    assert "100% 40.0/40.0 MB" in frames[2]
    assert frames[2].endswith("\n")
    assert out.getvalue().count("\n") == 1


def test_progress_bar_with_unknown_total_shows_megabytes() -> None:
    out = io.StringIO()
    clock = SteppedClock()
    bar = progress_bar(out, clock=clock)
    bar(0, None)
    clock.seconds = 1.0
    bar(2_500_000, None)
    bar(3_000_000, 3_000_000)  # pull_model's last call: done == total
    frames = out.getvalue().split("\r")[1:]
    assert frames[0].rstrip() == "0.0 MB"
    assert frames[1].rstrip() == "2.5 MB"
    assert "100% 3.0/3.0 MB" in frames[2]
