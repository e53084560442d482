"""Agent passwords: argon2id hashes (argon2-cffi's ``PasswordHasher`` with its
default parameters), checked in constant time.

Hashes written before argon2id (``scrypt$<n>$<r>$<p>$<salt>$<key>``, salt and
key in base64) still verify; a check says when a hash should be replaced (an
old scheme, or argon2 parameters older than the hasher's), and the sign-in
that proved the password replaces it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ARGON2_PREFIX = "$argon2"
SCRYPT_PREFIX = "scrypt$"
# The highest scrypt cost an old hash may ask for (its memory is 128 * r * n bytes).
_SCRYPT_MAX_MEMORY = 2**26


@dataclass(frozen=True)
class PasswordCheck:
    """A password checked against a stored hash."""

    matches: bool
    # The hash should be replaced by a new one of the current scheme and cost.
    needs_rehash: bool = False


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    return PasswordHasher()


def hash_password(password: str) -> str:
    """A new argon2id hash of the password (its own random salt inside)."""
    return _hasher().hash(password)


def scheme_of(stored_hash: str) -> str:
    """``argon2id``, ``scrypt`` or ``unknown``: how a stored hash was made."""
    if stored_hash.startswith("$argon2id$"):
        return "argon2id"
    if stored_hash.startswith(SCRYPT_PREFIX):
        return "scrypt"
    return "unknown"


def _scrypt_matches(password: str, stored_hash: str) -> bool:
    try:
        scheme, n, r, p, salt, key = stored_hash.split("$")
        expected = base64.b64decode(key, validate=True)
        actual = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt, validate=True),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected) or 32,
            maxmem=_SCRYPT_MAX_MEMORY,
        )
    except ValueError:  # a malformed hash, or a cost beyond maxmem
        return False
    return scheme == "scrypt" and bool(expected) and hmac.compare_digest(actual, expected)


def check_password(password: str, stored_hash: str) -> PasswordCheck:
    """Whether ``password`` is the one ``stored_hash`` was made from; a
    malformed or unknown hash matches nothing."""
    if stored_hash.startswith(SCRYPT_PREFIX):
        # A match proves the password: the sign-in moves it to argon2id.
        return PasswordCheck(_scrypt_matches(password, stored_hash), needs_rehash=True)
    if not stored_hash.startswith(ARGON2_PREFIX):
        return PasswordCheck(False)
    hasher = _hasher()
    try:
        hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return PasswordCheck(False)
    return PasswordCheck(True, needs_rehash=hasher.check_needs_rehash(stored_hash))


def password_matches(password: str, stored_hash: str) -> bool:
    return check_password(password, stored_hash).matches


@lru_cache(maxsize=1)
def unknown_agent_hash() -> str:
    """Checked against when the name is unknown, so a wrong name costs what a
    wrong password costs (the time does not tell which names exist). Made
    once per process, with the current parameters, of a password nobody has."""
    return hash_password(secrets.token_urlsafe(32))
