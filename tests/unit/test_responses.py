"""Every response the voicebot speaks itself exists in the domain."""

from __future__ import annotations

from pathlib import Path

from ruamel.yaml import YAML

from bot.responses import Response

DOMAIN = Path(__file__).resolve().parents[2] / "domain.yml"


def test_every_response_named_in_code_is_in_the_domain() -> None:
    responses = YAML(typ="safe").load(DOMAIN.read_text(encoding="utf-8"))["responses"]
    missing = [r.value for r in Response if r.value not in responses]
    assert missing == []
