"""Agent accounts: salted scrypt password hashes and sign-in checks."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.queue import AgentQueue, QueueError
from bot.queue.passwords import hash_password, password_matches
from bot.queue.schema import agents


def test_hashes_are_salted_scrypt() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second
    scheme, n, r, p, salt, key = first.split("$")
    assert scheme == "scrypt"
    expected = hashlib.scrypt(
        b"correct horse", salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32
    )
    assert base64.b64decode(key) == expected
    assert "correct horse" not in first


def test_a_hash_matches_only_its_password() -> None:
    stored = hash_password("s3cret")
    assert password_matches("s3cret", stored)
    assert not password_matches("s3cret ", stored)
    assert not password_matches("S3cret", stored)
    assert not password_matches("", stored)


def test_malformed_hashes_match_nothing() -> None:
    for stored in ("", "plain", "md5$1$2$3$4$5", "scrypt$x$8$1$AAAA$AAAA", "scrypt$16384$8$1$!$!"):
        assert not password_matches("anything", stored)


def test_agents_sign_in_with_their_own_password(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'queue.sqlite3'}"
    with AgentQueue(url) as queue:
        ann = queue.add_agent("ann", "ann-pass", "supervisor", ["orders", "billing"])
        queue.add_agent("bob", "bob-pass")
        assert queue.verify_password("ann", "ann-pass") == ann
        assert ann.role == "supervisor" and ann.skills == ("orders", "billing")
        assert queue.verify_password("ann", "bob-pass") is None
        assert queue.verify_password("nobody", "ann-pass") is None
        assert [agent.name for agent in queue.agents()] == ["ann", "bob"]
        with queue.engine.connect() as conn:
            stored = conn.execute(sa.select(agents.c.password_hash)).scalars().all()
        assert all(value.startswith("scrypt$") and "pass" not in value for value in stored)


def test_account_refusals(tmp_path: Path) -> None:
    with AgentQueue(f"sqlite:///{tmp_path / 'queue.sqlite3'}") as queue:
        queue.add_agent("ann", "pw")
        cases = [
            (("ann", "other"), "agent_exists"),
            (("cat", "pw", "boss"), "invalid"),
            (("", "pw"), "invalid"),
            (("dan", ""), "invalid"),
            (("eve", "pw", "agent", ["orders,billing"]), "invalid"),
        ]
        for args, code in cases:
            with pytest.raises(QueueError) as refused:
                queue.add_agent(*args)  # type: ignore[arg-type]
            assert refused.value.code == code, args
        assert [agent.name for agent in queue.agents()] == ["ann"]
