"""Registered lines: the bot as extensions of a PBX.

A PBX that keeps its agents' and services' phones as extensions reaches the
bot at the address the bot registers (RFC 3261 §10): one REGISTER per
account, answered with a Digest challenge and then 200, refreshed well
before the registrar's expiry. When a refresh goes unanswered (the registrar
is down or restarting) the line says so once in the log and tries again with
backoff until the registrar is back, so a restarted PBX finds the bot again
without anyone touching it. Between refreshes an OPTIONS ping notices a lost
registrar sooner. On stop each account is unregistered (Expires: 0).

Accounts come from ``telephony.accounts`` in voicebot.yml, one entry per
extension or a numbered range (``users: 201-208``) sharing a password.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.telephony.sip import (
    SipError,
    SipMessage,
    digest_authorization,
    new_call_id,
    new_tag,
    parse_name_addr,
    request,
)

if TYPE_CHECKING:
    from bot.telephony.endpoint import SipEndpoint

log = logging.getLogger(__name__)

# Retry intervals after a failed registration, seconds; the last repeats.
BACKOFF = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
# A REGISTER unanswered this long (retransmitted meanwhile) counts as failed.
REGISTER_SECONDS = 8.0


class AccountError(ValueError):
    """A ``telephony.accounts`` entry that cannot be used."""


@dataclass(frozen=True)
class Account:
    registrar: str  # host or host:port
    user: str
    password: str = ""
    # The name for authentication when it differs from the extension.
    auth_user: str = ""
    # The domain of the address of record (default: the registrar's host).
    domain: str = ""
    expires: int = 600
    # Seconds between OPTIONS pings to the registrar while registered (0: none).
    keepalive_seconds: float = 30.0

    @property
    def registrar_host_port(self) -> tuple[str, int]:
        host, sep, port = self.registrar.rpartition(":")
        if sep and port.isdigit() and host and not host.endswith(":"):
            return host.strip("[]"), int(port)
        return self.registrar.strip("[]"), 5060

    @property
    def aor_domain(self) -> str:
        return self.domain or self.registrar_host_port[0]

    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{self.aor_domain}"


_ACCOUNT_KEYS = {
    "registrar",
    "user",
    "users",
    "password",
    "password_env",
    "auth_user",
    "domain",
    "expires",
    "keepalive_seconds",
}


def parse_accounts(entries: Sequence[Mapping[str, Any]], env: Mapping[str, str]) -> list[Account]:
    """``telephony.accounts`` as accounts, ranges expanded; a clear error for
    a bad entry. ``password_env`` names an environment variable holding the
    password, so it stays out of the settings file."""
    accounts: list[Account] = []
    for number, entry in enumerate(entries, start=1):
        where = f"telephony.accounts[{number}]"
        if not isinstance(entry, Mapping):
            raise AccountError(f"{where}: expected a mapping with registrar and user")
        unknown = set(entry) - _ACCOUNT_KEYS
        if unknown:
            raise AccountError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        registrar = str(entry.get("registrar") or "").strip()
        if not registrar:
            raise AccountError(f"{where}: registrar (host or host:port) is required")
        password = str(entry.get("password") or "")
        if entry.get("password_env"):
            name = str(entry["password_env"])
            if name not in env:
                raise AccountError(f"{where}: the environment variable {name} is not set")
            password = env[name]
        try:
            expires = int(entry.get("expires", 600))
            keepalive = float(entry.get("keepalive_seconds", 30.0))
        except (TypeError, ValueError) as exc:
            raise AccountError(f"{where}: expires and keepalive_seconds are numbers") from exc
        if expires < 10:
            raise AccountError(f"{where}: expires must be at least 10 seconds")
        for user in _users(entry, where):
            accounts.append(
                Account(
                    registrar=registrar,
                    user=user,
                    password=password,
                    auth_user=str(entry.get("auth_user") or ""),
                    domain=str(entry.get("domain") or ""),
                    expires=expires,
                    keepalive_seconds=keepalive,
                )
            )
    return accounts


def _users(entry: Mapping[str, Any], where: str) -> list[str]:
    if ("user" in entry) == ("users" in entry):
        raise AccountError(f"{where}: give either user (one extension) or users (a range)")
    if "user" in entry:
        user = str(entry["user"]).strip()
        if not user or any(ch.isspace() or ch in "@:;<>" for ch in user):
            raise AccountError(f"{where}: bad user {user!r}")
        return [user]
    text = str(entry["users"]).replace(" ", "")
    first, dash, last = text.partition("-")
    if not dash or not first.isdigit() or not last.isdigit() or int(last) < int(first):
        raise AccountError(f"{where}: users must be a range such as 201-208, got {text!r}")
    if int(last) - int(first) >= 1000:
        raise AccountError(f"{where}: a range of at most 1000 extensions")
    width = len(first)
    return [str(n).zfill(width) for n in range(int(first), int(last) + 1)]


def local_address_for(remote: tuple[str, int]) -> str:
    """The local address the system would use to reach ``remote``."""
    family = socket.AF_INET6 if ":" in remote[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(remote)
        return str(probe.getsockname()[0])


class Registration:
    """Keeps one account registered through the endpoint's SIP socket."""

    def __init__(self, endpoint: SipEndpoint, account: Account) -> None:
        self.endpoint = endpoint
        self.account = account
        self.call_id = new_call_id(endpoint.settings.host)
        self.tag = new_tag()
        self.cseq = 0
        self.registered = False
        self.granted = 0
        self.registrations = 0  # successful REGISTERs (first and refreshes)
        self._nc = 0
        self._registrar: tuple[str, int] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_registered())

    async def stop(self) -> None:
        """Stops refreshing and removes the binding (best effort)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.registered:
            granted = await self._register(0, timeout=4.0)
            self.registered = False
            if granted is not None:
                log.info("%s: unregistered", self.account.aor)

    async def _keep_registered(self) -> None:
        failures = 0
        while True:
            granted = await self._register(self.account.expires)
            if granted is None:
                if self.registered or failures == 0:
                    log.warning(
                        "%s: registration with %s failed; retrying",
                        self.account.aor,
                        self.account.registrar,
                    )
                self.registered = False
                await asyncio.sleep(BACKOFF[min(failures, len(BACKOFF) - 1)])
                failures += 1
                continue
            if not self.registered:
                log.info(
                    "%s: registered with %s for %d s",
                    self.account.aor,
                    self.account.registrar,
                    granted,
                )
            self.registered, self.granted, failures = True, granted, 0
            await self._until_refresh(refresh_after(granted))

    async def _until_refresh(self, seconds: float) -> None:
        """Waits for the refresh time, pinging the registrar on the way; a
        ping with no answer brings the refresh forward."""
        loop = asyncio.get_running_loop()
        due = loop.time() + seconds
        every = self.account.keepalive_seconds
        while (left := due - loop.time()) > 0:
            if every <= 0 or every >= left:
                await asyncio.sleep(left)
                return
            await asyncio.sleep(every)
            if not await self._ping():
                log.warning(
                    "%s: the registrar %s stopped answering",
                    self.account.aor,
                    self.account.registrar,
                )
                return

    async def _ping(self) -> bool:
        addr = await self._resolve()
        if addr is None:
            return False
        host = self.account.aor_domain
        ping = request(
            "OPTIONS",
            f"sip:{host}",
            [
                ("Via", self.endpoint.via()),
                ("Max-Forwards", "70"),
                ("From", f"<{self.account.aor}>;tag={new_tag()}"),
                ("To", f"<sip:{host}>"),
                ("Call-ID", new_call_id(self.endpoint.settings.host)),
                ("CSeq", "1 OPTIONS"),
            ],
        )
        return await self.endpoint.send_request(ping, addr, timeout=8.0) is not None

    async def _resolve(self) -> tuple[str, int] | None:
        if self._registrar is None:
            host, port = self.account.registrar_host_port
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_DGRAM
                )
            except OSError as exc:
                log.warning("%s: cannot resolve the registrar %s: %s", self.account.aor, host, exc)
                return None
            address = infos[0][4]
            self._registrar = (str(address[0]), int(address[1]))
        return self._registrar

    def _contact_host(self, registrar: tuple[str, int]) -> str:
        settings = self.endpoint.settings
        if settings.host not in ("0.0.0.0", "::"):
            return settings.host
        if settings.media_address:
            return settings.media_address
        return local_address_for(registrar)

    def _request(self, expires: int, registrar: tuple[str, int]) -> SipMessage:
        self.cseq += 1
        account = self.account
        contact_host = self._contact_host(registrar)
        if ":" in contact_host:
            contact_host = f"[{contact_host}]"
        return request(
            "REGISTER",
            f"sip:{account.aor_domain}",
            [
                ("Via", self.endpoint.via()),
                ("Max-Forwards", "70"),
                ("From", f"<{account.aor}>;tag={self.tag}"),
                ("To", f"<{account.aor}>"),
                ("Call-ID", self.call_id),
                ("CSeq", f"{self.cseq} REGISTER"),
                ("Contact", f"<sip:{account.user}@{contact_host}:{self.endpoint.local_port}>"),
                ("Expires", str(expires)),
                ("User-Agent", "voicebot"),
            ],
        )

    async def _register(self, expires: int, timeout: float = REGISTER_SECONDS) -> int | None:
        """One REGISTER (answering one challenge): the granted expiry, or None."""
        registrar = await self._resolve()
        if registrar is None:
            return None
        message = self._request(expires, registrar)
        reply = await self.endpoint.send_request(message, registrar, timeout)
        for _attempt in range(2):
            if reply is None or reply.status not in (401, 407):
                break
            answered = self._answer_challenge(message, reply)
            if answered is None:
                return None
            message = answered
            reply = await self.endpoint.send_request(message, registrar, timeout)
        if reply is None:
            return None
        if reply.status is None or not 200 <= reply.status < 300:
            self._registrar = None  # look the name up again next time
            log.warning(
                "%s: the registrar answered %s %s",
                self.account.aor,
                reply.status,
                reply.reason,
            )
            return None
        self.registrations += 1
        return granted_expiry(reply, message, expires)

    def _answer_challenge(self, sent: SipMessage, reply: SipMessage) -> SipMessage | None:
        account = self.account
        if reply.status == 401:
            challenge, header = reply.header("WWW-Authenticate"), "Authorization"
        else:
            challenge, header = reply.header("Proxy-Authenticate"), "Proxy-Authorization"
        if not challenge:
            log.warning("%s: %s without a challenge", account.aor, reply.status)
            return None
        if sent.header(header) and "stale=true" not in challenge.lower():
            log.warning(
                "%s: the registrar refused the password for %s",
                account.aor,
                account.auth_user or account.user,
            )
            return None
        self._nc += 1
        try:
            authorization = digest_authorization(
                challenge,
                "REGISTER",
                sent.uri or "",
                account.auth_user or account.user,
                account.password,
                nc=self._nc,
            )
        except SipError as exc:
            log.warning("%s: cannot answer the registrar's challenge: %s", account.aor, exc)
            return None
        expires = int(sent.header("Expires") or account.expires)
        again = self._request(expires, self._registrar or ("", 0))
        again.set_header(header, authorization)
        return again


def refresh_after(granted: int) -> float:
    """Seconds until a refresh: half of a short expiry, else 30 s before it."""
    return granted / 2 if granted <= 120 else granted - 30


def granted_expiry(reply: SipMessage, sent: SipMessage, asked: int) -> int:
    """The expiry the registrar granted our contact (its Contact's expires
    parameter, else the Expires header, else what was asked)."""
    ours = parse_name_addr(sent.header("Contact") or "").uri
    for value in reply.header_all("Contact"):
        with contextlib.suppress(SipError, ValueError):
            contact = parse_name_addr(value)
            if contact.uri == ours and contact.params.get("expires", "").isdigit():
                return int(contact.params["expires"])
    expires = (reply.header("Expires") or "").strip()
    return int(expires) if expires.isdigit() else asked
