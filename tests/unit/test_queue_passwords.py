"""Agent accounts: argon2id password hashes (old scrypt ones still verify and
are replaced at sign-in), sign-in checks, roles, disabling and the login
throttle's memory in the audit log."""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import timedelta
from pathlib import Path

import argon2
import pytest
import sqlalchemy as sa

from bot.queue import AgentQueue, QueueError
from bot.queue.accounts import AgentAccounts, audit_log
from bot.queue.passwords import (
    check_password,
    hash_password,
    password_matches,
    unknown_agent_hash,
)
from bot.queue.schema import agents
from tests.queue_databases import ManualClock

LOCKOUT = timedelta(minutes=15)


def old_scrypt_hash(password: str) -> str:
    """A hash as the console stored them before argon2id: scrypt, N=2^14."""
    salt = os.urandom(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    encoded = [base64.b64encode(part).decode("ascii") for part in (salt, key)]
    return f"scrypt$16384$8$1${encoded[0]}${encoded[1]}"


def current_parameters() -> argon2.Parameters:
    hasher = argon2.PasswordHasher()
    return argon2.Parameters(
        type=hasher.type,
        version=argon2.low_level.ARGON2_VERSION,
        salt_len=hasher.salt_len,
        hash_len=hasher.hash_len,
        time_cost=hasher.time_cost,
        memory_cost=hasher.memory_cost,
        parallelism=hasher.parallelism,
    )


def test_hashes_are_salted_argon2id_with_the_hashers_default_parameters() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second
    assert first.startswith("$argon2id$")
    assert argon2.extract_parameters(first) == current_parameters()
    assert "correct horse" not in first
    assert argon2.PasswordHasher().verify(first, "correct horse")


def test_a_hash_matches_only_its_password() -> None:
    stored = hash_password("s3cret")
    assert password_matches("s3cret", stored)
    assert not password_matches("s3cret ", stored)
    assert not password_matches("S3cret", stored)
    assert not password_matches("", stored)


def test_malformed_hashes_match_nothing() -> None:
    for stored in ("", "plain", "md5$1$2$3$4$5", "scrypt$x$8$1$AAAA$AAAA", "scrypt$16384$8$1$!$!",
                   "scrypt$1048576$64$1$AAAA$AAAA", "$argon2id$v=19$m=65536,t=3,p=4$!!$!!",
                   "$argon2id$nonsense"):  # fmt: skip
        assert not password_matches("anything", stored), stored


def test_old_scrypt_hashes_verify_and_ask_to_be_replaced() -> None:
    stored = old_scrypt_hash("s3cret")
    assert check_password("s3cret", stored).matches
    assert check_password("s3cret", stored).needs_rehash
    assert not check_password("s3cret!", stored).matches
    weak = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("s3cret")
    assert check_password("s3cret", weak).matches and check_password("s3cret", weak).needs_rehash
    current = hash_password("s3cret")
    assert check_password("s3cret", current).matches
    assert not check_password("s3cret", current).needs_rehash


def test_an_unknown_name_is_checked_against_a_hash_of_the_current_cost() -> None:
    # So a wrong name costs what a wrong password of a current account costs.
    assert argon2.extract_parameters(unknown_agent_hash()) == current_parameters()
    assert unknown_agent_hash() == unknown_agent_hash()  # made once per process


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
        assert all(value.startswith("$argon2id$") and "pass" not in value for value in stored)


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
        accounts = AgentAccounts(queue.engine)
        accounts.create_tables()
        for change, code in (
            (lambda: accounts.set_role("ann", "boss", "cli:test"), "invalid"),
            (lambda: accounts.set_role("nobody", "admin", "cli:test"), "no_such_agent"),
            (lambda: accounts.set_disabled("nobody", True, "cli:test"), "no_such_agent"),
        ):
            with pytest.raises(QueueError) as refused:
                change()
            assert refused.value.code == code
        assert [(a.name, a.role, off) for a, off in accounts.accounts()] == [
            ("ann", "agent", False)
        ]


def _stored_hash(queue: AgentQueue, name: str) -> str:
    with queue.engine.connect() as conn:
        return str(
            conn.execute(sa.select(agents.c.password_hash).where(agents.c.name == name)).scalar()
        )


def _set_hash(queue: AgentQueue, name: str, stored: str) -> None:
    with queue.engine.begin() as conn:
        conn.execute(agents.update().where(agents.c.name == name).values(password_hash=stored))


def test_signing_in_replaces_old_hashes_with_current_ones(tmp_path: Path) -> None:
    with AgentQueue(f"sqlite:///{tmp_path / 'queue.sqlite3'}") as queue:
        queue.add_agent("ann", "unused")
        accounts = AgentAccounts(queue.engine)
        accounts.create_tables()
        _set_hash(queue, "ann", old_scrypt_hash("ann-pass"))
        assert accounts.sign_in("ann", "wrong").agent is None
        assert _stored_hash(queue, "ann").startswith("scrypt$")  # a wrong password changes nothing
        signed = accounts.sign_in("ann", "ann-pass")
        assert signed.agent is not None and signed.rehashed_from == "scrypt"
        renewed = _stored_hash(queue, "ann")
        assert argon2.extract_parameters(renewed) == current_parameters()
        again = accounts.sign_in("ann", "ann-pass")
        assert again.agent is not None and again.rehashed_from == ""
        assert _stored_hash(queue, "ann") == renewed

        weak = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
        _set_hash(queue, "ann", weak.hash("ann-pass"))
        assert accounts.sign_in("ann", "ann-pass").rehashed_from == "argon2id"
        assert argon2.extract_parameters(_stored_hash(queue, "ann")) == current_parameters()


def test_failed_logins_lock_a_name_until_the_lockout_ends_or_an_unlock(tmp_path: Path) -> None:
    clock = ManualClock()
    with AgentQueue(f"sqlite:///{tmp_path / 'queue.sqlite3'}") as queue:
        accounts = AgentAccounts(queue.engine, clock=clock)
        accounts.create_tables()
        for name in ("ann", "nobody"):  # unknown names are throttled alike
            for _ in range(4):
                assert accounts.record_failure(name, None, "10.0.0.9", 5, LOCKOUT) is None
            assert accounts.locked_until(name, LOCKOUT) is None
            ends = accounts.record_failure(name, None, "10.0.0.9", 5, LOCKOUT)
            assert ends == clock.now + LOCKOUT
            assert accounts.locked_until(name, LOCKOUT) == ends
        assert accounts.locked_until("bob", LOCKOUT) is None

        clock.advance(LOCKOUT.total_seconds() - 1)
        assert accounts.locked_until("ann", LOCKOUT) is not None
        clock.advance(1)
        assert accounts.locked_until("ann", LOCKOUT) is None
        # The failures before the lockout do not count again.
        assert accounts.record_failure("ann", None, "10.0.0.9", 5, LOCKOUT) is None

        assert accounts.unlock("nobody", "cli:test", LOCKOUT) is False  # ran out already
        for _ in range(5):
            accounts.record_failure("bob", None, None, 5, LOCKOUT)
        assert accounts.locked_until("bob", LOCKOUT) is not None
        assert accounts.unlock("bob", "cli:test", LOCKOUT) is True
        assert accounts.locked_until("bob", LOCKOUT) is None
        assert accounts.record_failure("bob", None, None, 5, LOCKOUT) is None  # counting afresh

        # Failures spread over more than the window never add up to a lockout.
        for _ in range(8):
            assert accounts.record_failure("cid", None, None, 5, LOCKOUT) is None
            clock.advance(LOCKOUT.total_seconds() / 4)
        # A successful sign-in starts the count again.
        for _ in range(4):
            accounts.record_failure("dan", None, None, 5, LOCKOUT)
        accounts.record("login", "dan")
        assert accounts.record_failure("dan", None, None, 5, LOCKOUT) is None

        with queue.engine.connect() as conn:
            locks = conn.execute(
                sa.select(audit_log.c.name, audit_log.c.address, audit_log.c.detail).where(
                    audit_log.c.event == "locked_out"
                )
            ).all()
        assert [(name, address) for name, address, _ in locks] == [
            ("ann", "10.0.0.9"),
            ("nobody", "10.0.0.9"),
            ("bob", None),
        ]
        assert locks[0].detail.startswith("5 failed logins within 15 minutes")


def test_roles_change_and_accounts_are_disabled_with_an_audit_row_each(tmp_path: Path) -> None:
    with AgentQueue(f"sqlite:///{tmp_path / 'queue.sqlite3'}") as queue:
        ann = queue.add_agent("ann", "ann-pass")
        queue.set_agent_state(ann.id, "available")
        accounts = AgentAccounts(queue.engine)
        accounts.create_tables()
        assert accounts.set_role("ann", "supervisor", "cli:test")[1] == "agent"
        assert accounts.set_role("ann", "supervisor", "cli:test")[1] == "supervisor"  # no change
        disabled, changed = accounts.set_disabled("ann", True, "cli:test")
        assert changed and disabled.state == "offline" and disabled.role == "supervisor"
        assert accounts.set_disabled("ann", True, "cli:test")[1] is False
        refused = accounts.sign_in("ann", "ann-pass")
        assert refused.disabled and refused.agent is not None
        assert (
            accounts.sign_in("ann", "wrong").disabled is False
        )  # says nothing without the password
        accounts.set_disabled("ann", False, "cli:test")
        assert not accounts.sign_in("ann", "ann-pass").disabled
        rows = [(e.event, e.detail, e.actor) for e in reversed(accounts.audit("ann"))]
        assert rows == [
            ("role_changed", "agent -> supervisor", "cli:test"),
            ("disabled", "", "cli:test"),
            ("enabled", "", "cli:test"),
        ]
