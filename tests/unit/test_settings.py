from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import SettingsError, find_project_dir, load_settings


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write(tmp_path / "domain.yml", 'version: "3.1"\n')
    return tmp_path


def test_defaults_without_a_settings_file(project: Path) -> None:
    settings = load_settings(project, env={})
    assert settings.project_dir == project.resolve()
    assert settings.models_dir == project.resolve() / "models"
    assert settings.backend_database == project.resolve() / "var/demo_backend.sqlite3"
    assert settings.dialogue.max_utterance_chars == 500


def test_file_values_then_environment_overrides(project: Path) -> None:
    write(
        project / "voicebot.yml",
        "dialogue:\n  max_utterance_chars: 200\n  actions_url: http://a\nbackend:\n"
        "  database: db/x.sqlite3\n",
    )
    settings = load_settings(project, env={"VOICEBOT_DIALOGUE_MAX_UTTERANCE_CHARS": "42"})
    assert settings.dialogue.max_utterance_chars == 42
    assert settings.dialogue.actions_url == "http://a"
    assert settings.backend_database == project.resolve() / "db/x.sqlite3"


def test_absolute_paths_stay_absolute(project: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "backend.sqlite3"
    settings = load_settings(project, env={"VOICEBOT_BACKEND_DATABASE": str(target)})
    assert settings.backend_database == target


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nonsense: {}\n", "unknown section"),
        ("dialogue:\n  colour: blue\n", "unknown setting"),
        ("dialogue:\n  max_utterance_chars: lots\n", "expected int"),
        ("- a list\n", "mapping"),
        ("dialogue: [unclosed\n", "not valid YAML"),
        ("telephony:\n  accounts: pbx.example.com\n", "accounts must be a list of mappings"),
    ],
)
def test_bad_settings_are_named(project: Path, text: str, message: str) -> None:
    write(project / "voicebot.yml", text)
    with pytest.raises(SettingsError, match=message):
        load_settings(project, env={})


def test_phone_accounts_are_read_as_a_list(project: Path) -> None:
    write(
        project / "voicebot.yml",
        "telephony:\n  lines: 6\n  accounts:\n"
        "    - {registrar: pbx.example.com, users: 201-206, password_env: PW}\n",
    )
    settings = load_settings(project, env={"VOICEBOT_TELEPHONY_LINES": "8"})
    assert settings.telephony.lines == 8
    assert settings.telephony.accounts == (
        {"registrar": "pbx.example.com", "users": "201-206", "password_env": "PW"},
    )


def test_bad_environment_value_is_named(project: Path) -> None:
    with pytest.raises(SettingsError, match="VOICEBOT_DIALOGUE_ACTION_SERVER_START_SECONDS"):
        load_settings(project, env={"VOICEBOT_DIALOGUE_ACTION_SERVER_START_SECONDS": "soon"})


def test_project_found_from_a_subdirectory(project: Path) -> None:
    nested = project / "a" / "b"
    nested.mkdir(parents=True)
    assert find_project_dir(nested) == project.resolve()
