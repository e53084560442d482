"""SIP (RFC 3261) messages: just enough for a bot that answers phone calls over UDP.

A phone system (PBX or carrier trunk) sends the bot an INVITE; the bot answers
with provisional and final responses, reads who is calling (and whether they
withheld their number), authenticates itself with digest credentials when a
registrar challenges it, and picks up keypad digits sent as SIP INFO. The
parser is strict where a mistake would mislead the call (missing mandatory
headers, truncated bodies) and lenient where real equipment is sloppy (compact
header names, folded header lines, bare LF line ends). Everything here is pure
data handling: no sockets, no timers, no dialog state.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

MAX_MESSAGE_BYTES = 64 * 1024
# RFC 3261 timers for UDP: T1, the first retransmission interval; T2, the
# longest interval between retransmissions of a non-INVITE request; a
# transaction with no answer for 64*T1 (timers B, F, H) has failed.
T1 = 0.5
T2 = 4.0
TRANSACTION_SECONDS = 64 * T1
# The methods the bot's endpoint understands (its Allow header).
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY, REFER"
REQUIRED_HEADERS = ("Via", "From", "To", "Call-ID", "CSeq")

# RFC 3261 §7.3.3 and later extensions' compact header names.
_COMPACT = {
    "i": "Call-ID",
    "f": "From",
    "t": "To",
    "v": "Via",
    "m": "Contact",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "s": "Subject",
    "e": "Content-Encoding",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "x": "Session-Expires",
    "u": "Allow-Events",
}
# Names whose canonical spelling is not simply each word capitalised.
_SPECIAL_NAMES = {
    name.lower(): name
    for name in (
        "Call-ID",
        "CSeq",
        "WWW-Authenticate",
        "MIME-Version",
        "P-Asserted-Identity",
        "P-Preferred-Identity",
        "RAck",
        "RSeq",
        "SIP-ETag",
        "SIP-If-Match",
    )
}
# Headers whose value may be a comma-separated list of entries.
_LIST_HEADERS = {"via", "route", "record-route", "contact", "p-asserted-identity"}

_TOKEN = r"[A-Za-z0-9.!%*_+`'~-]+"
_REQUEST_LINE = re.compile(rf"^({_TOKEN}) (\S+) SIP/2\.0$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6][0-9][0-9])(?: (.*))?$")
_HEADER_NAME = re.compile(rf"^{_TOKEN}$")


class SipError(ValueError):
    """A SIP message, header or URI that cannot be understood."""


def canonical_name(name: str) -> str:
    """The canonical spelling of a header name, expanding compact forms."""
    lower = name.strip().lower()
    if lower in _COMPACT:
        return _COMPACT[lower]
    if lower in _SPECIAL_NAMES:
        return _SPECIAL_NAMES[lower]
    return "-".join(part.capitalize() for part in lower.split("-"))


def _split_list(value: str) -> list[str]:
    """Split a header value at commas that are outside quotes and angle brackets."""
    parts: list[str] = []
    current: list[str] = []
    in_quotes = False
    in_angle = False
    escaped = False
    for ch in value:
        if escaped:
            escaped = False
        elif in_quotes and ch == "\\":
            escaped = True
        elif ch == '"':
            in_quotes = not in_quotes
        elif not in_quotes and ch == "<":
            in_angle = True
        elif not in_quotes and ch == ">":
            in_angle = False
        elif ch == "," and not in_quotes and not in_angle:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    parts.append("".join(current).strip())
    return [part for part in parts if part]


@dataclass
class SipMessage:
    """One SIP request (``method`` and ``uri`` set) or response (``status`` set)."""

    method: str | None = None
    uri: str | None = None
    status: int | None = None
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive, compact names understood)."""
        wanted = canonical_name(name)
        for key, value in self.headers:
            if canonical_name(key) == wanted:
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        """Every value of a header, with comma-separated lists (Via, Route...) split."""
        wanted = canonical_name(name)
        split = wanted.lower() in _LIST_HEADERS
        values: list[str] = []
        for key, value in self.headers:
            if canonical_name(key) == wanted:
                values.extend(_split_list(value) if split else [value])
        return values

    def set_header(self, name: str, value: str) -> None:
        """Replace every occurrence of a header with one value (in the first one's place)."""
        wanted = canonical_name(name)
        replaced: list[tuple[str, str]] = []
        done = False
        for key, old in self.headers:
            if canonical_name(key) != wanted:
                replaced.append((key, old))
            elif not done:
                replaced.append((wanted, value))
                done = True
        if not done:
            replaced.append((wanted, value))
        self.headers = replaced

    def add_header(self, name: str, value: str) -> None:
        """Append a header, keeping any existing ones of the same name."""
        self.headers.append((canonical_name(name), value))

    def remove_header(self, name: str) -> None:
        wanted = canonical_name(name)
        self.headers = [(k, v) for k, v in self.headers if canonical_name(k) != wanted]

    @property
    def cseq(self) -> tuple[int, str]:
        """The CSeq sequence number and method."""
        value = self.header("CSeq")
        if value is None:
            raise SipError("missing CSeq header")
        return _parse_cseq(value)

    @property
    def call_id(self) -> str:
        value = self.header("Call-ID")
        if value is None:
            raise SipError("missing Call-ID header")
        return value

    def to_bytes(self) -> bytes:
        """The message on the wire: canonical header names, Content-Length from the body."""
        if self.method is not None:
            if self.uri is None:
                raise SipError("a request needs a Request-URI")
            start = f"{self.method} {self.uri} SIP/2.0"
        elif self.status is not None:
            start = f"SIP/2.0 {self.status} {self.reason}"
        else:
            raise SipError("a message needs either a method or a status")
        lines = [start]
        for key, value in self.headers:
            name = canonical_name(key)
            if name != "Content-Length":
                lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("utf-8") + self.body

    @classmethod
    def parse(cls, data: bytes) -> SipMessage:
        """Parse one datagram; raises SipError saying what is wrong with it."""
        if len(data) > MAX_MESSAGE_BYTES:
            raise SipError(f"message is {len(data)} bytes, over the {MAX_MESSAGE_BYTES} limit")
        # Keep-alive CRLFs may precede the start line (RFC 3261 §7.5).
        data = data.lstrip(b"\r\n")
        if not data:
            raise SipError("empty message")
        head, body = _split_head(data)
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SipError("message head is not UTF-8 text") from exc
        lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
        message = cls()
        _parse_start_line(message, lines[0])
        for line in lines[1:]:
            if not line:
                continue
            if line[0] in " \t":
                if not message.headers:
                    raise SipError("continuation line before any header")
                key, value = message.headers[-1]
                message.headers[-1] = (key, f"{value} {line.strip()}".strip())
                continue
            name, sep, value = line.partition(":")
            name = name.strip()
            if not sep:
                raise SipError(f"header line without a colon: {line[:60]!r}")
            if not _HEADER_NAME.match(name):
                raise SipError(f"bad header name: {name[:60]!r}")
            message.headers.append((name, value.strip()))
        for required in REQUIRED_HEADERS:
            if message.header(required) is None:
                raise SipError(f"missing {required} header")
        _parse_cseq(message.header("CSeq") or "")
        length_text = message.header("Content-Length")
        if length_text is None:
            message.body = body  # UDP: the body runs to the end of the datagram
        else:
            if not length_text.isdigit():
                raise SipError(f"bad Content-Length: {length_text!r}")
            length = int(length_text)
            if len(body) < length:
                raise SipError(f"body is {len(body)} bytes, shorter than Content-Length {length}")
            message.body = body[:length]
        return message


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    ends = [(data.find(sep), sep) for sep in (b"\r\n\r\n", b"\n\n", b"\n\r\n")]
    found = [(pos, sep) for pos, sep in ends if pos >= 0]
    if not found:
        return data, b""
    pos, sep = min(found)
    return data[:pos], data[pos + len(sep) :]


def _parse_start_line(message: SipMessage, line: str) -> None:
    status = _STATUS_LINE.match(line)
    if status:
        message.status = int(status.group(1))
        message.reason = status.group(2) or ""
        return
    request = _REQUEST_LINE.match(line)
    if request:
        message.method = request.group(1)
        message.uri = request.group(2)
        return
    raise SipError(f"not a SIP request or status line: {line[:80]!r}")


def _parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit():
        raise SipError(f"bad CSeq: {value!r}")
    return int(parts[0]), parts[1]


def request(
    method: str, uri: str, headers: Iterable[tuple[str, str]], body: bytes = b""
) -> SipMessage:
    """A new request; the caller supplies Via, From, To, Call-ID, CSeq and the rest."""
    if not re.fullmatch(_TOKEN, method):
        raise SipError(f"bad method: {method!r}")
    if not uri or any(ch.isspace() for ch in uri):
        raise SipError(f"bad Request-URI: {uri!r}")
    return SipMessage(
        method=method,
        uri=uri,
        headers=[(canonical_name(k), v) for k, v in headers],
        body=body,
    )


def response_to(
    req: SipMessage,
    status: int,
    reason: str,
    to_tag: str | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> SipMessage:
    """A response to ``req`` with the headers RFC 3261 §8.2.6 says to copy.

    Via (every one, in order), From, To, Call-ID and CSeq are copied; ``to_tag``
    is added to To unless the request's To already has a tag. For responses
    that may set up a dialog (101-299), Record-Route is copied too (§12.1.1).
    """
    if not req.is_request:
        raise SipError("can only respond to a request")
    if not 100 <= status <= 699:
        raise SipError(f"bad status code: {status}")
    if body and content_type is None:
        raise SipError("a response body needs a content type")
    headers: list[tuple[str, str]] = [("Via", via) for via in req.header_all("Via")]
    from_value = req.header("From")
    to_value = req.header("To")
    call_id = req.header("Call-ID")
    cseq = req.header("CSeq")
    if from_value is None or to_value is None or call_id is None or cseq is None:
        raise SipError("request lacks From, To, Call-ID or CSeq")
    if to_tag and "tag" not in parse_name_addr(to_value).params:
        to_value = f"{to_value};tag={to_tag}"
    headers += [("From", from_value), ("To", to_value), ("Call-ID", call_id), ("CSeq", cseq)]
    if 100 < status < 300:
        headers += [("Record-Route", route) for route in req.header_all("Record-Route")]
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    return SipMessage(status=status, reason=reason, headers=headers, body=body)


@dataclass(frozen=True)
class NameAddr:
    """A From/To/Contact-style value: optional display name, URI, header parameters."""

    display: str
    uri: str
    params: dict[str, str]


def _parse_params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for raw in _split_outside_quotes(text, ";"):
        item = raw.strip()
        if not item:
            continue
        key, _, value = item.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        params[key.strip().lower()] = value
    return params


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    in_quotes = False
    for ch in text:
        if ch == '"':
            in_quotes = not in_quotes
        if ch == sep and not in_quotes:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def parse_name_addr(value: str) -> NameAddr:
    """Parse ``"Display" <sip:u@h;x=y>;tag=abc``, ``<sip:u@h>`` or bare ``sip:u@h;tag=x``."""
    text = value.strip()
    if not text:
        raise SipError("empty name-addr")
    display = ""
    if text.startswith('"'):
        chars: list[str] = []
        i = 1
        while i < len(text):
            ch = text[i]
            if ch == "\\" and i + 1 < len(text):
                chars.append(text[i + 1])
                i += 2
                continue
            if ch == '"':
                break
            chars.append(ch)
            i += 1
        else:
            raise SipError(f"unterminated display name in {value!r}")
        display = "".join(chars)
        text = text[i + 1 :].lstrip()
        if not text.startswith("<"):
            raise SipError(f"quoted display name without <uri> in {value!r}")
    if "<" in text:
        before, _, rest = text.partition("<")
        if not display:
            display = before.strip()
        uri, closed, params = rest.partition(">")
        if not closed:
            raise SipError(f"missing '>' in {value!r}")
        uri = uri.strip()
        params = params.strip()
        if params and not params.startswith(";"):
            raise SipError(f"unexpected text after '>' in {value!r}")
    else:
        # Bare addr-spec: parameters after the URI belong to the header (§20.10).
        uri, _, params = text.partition(";")
        uri = uri.strip()
    if not uri or ":" not in uri:
        raise SipError(f"no URI in {value!r}")
    return NameAddr(display=display, uri=uri, params=_parse_params(params))


def _scheme(uri: str) -> tuple[str, str]:
    scheme, sep, rest = uri.strip().strip("<>").partition(":")
    if not sep:
        raise SipError(f"URI without a scheme: {uri!r}")
    return scheme.lower(), rest


def uri_user(uri: str) -> str | None:
    """The user part of a sip:, sips: or tel: URI, without parameters; None if it has none."""
    scheme, rest = _scheme(uri)
    if scheme == "tel":
        user = rest.split(";", 1)[0]
    elif scheme in ("sip", "sips"):
        userinfo, at, _ = rest.rpartition("@")
        if not at:
            return None
        user = userinfo.split(";", 1)[0].split(":", 1)[0]
    else:
        return None
    user = unquote(user)
    return user or None


def uri_host_port(uri: str) -> tuple[str, int]:
    """The host and port of a sip:/sips: URI (default 5060, or 5061 for sips:)."""
    scheme, rest = _scheme(uri)
    if scheme not in ("sip", "sips"):
        raise SipError(f"not a sip: URI: {uri!r}")
    hostport = rest.rpartition("@")[2]
    hostport = re.split(r"[;?]", hostport, maxsplit=1)[0]
    default = 5061 if scheme == "sips" else 5060
    if hostport.startswith("["):
        host, closed, after = hostport[1:].partition("]")
        if not closed:
            raise SipError(f"bad IPv6 host in {uri!r}")
        port_text = after[1:] if after.startswith(":") else ""
        if after and not after.startswith(":"):
            raise SipError(f"bad host in {uri!r}")
    else:
        host, _, port_text = hostport.partition(":")
    if not host:
        raise SipError(f"no host in {uri!r}")
    if not port_text:
        return host, default
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise SipError(f"bad port in {uri!r}")
    return host, int(port_text)


@dataclass(frozen=True)
class CallerId:
    """Who is calling: a normalised number and display name, unless withheld."""

    number: str | None
    name: str | None
    withheld: bool


_ANONYMOUS_USERS = {"anonymous", "unknown", "restricted", "unavailable"}
_PRIVACY_HIDING = {"id", "user", "header"}
_PHONE_NUMBER = re.compile(r"^[+0-9\-.() ]*[0-9][+0-9\-.() ]*$")


def _is_anonymous(addr: NameAddr) -> bool:
    user = uri_user(addr.uri)
    if user is not None and user.strip().lower() in _ANONYMOUS_USERS:
        return True
    try:
        host, _ = uri_host_port(addr.uri)
    except SipError:
        return False
    return host.lower() == "anonymous.invalid"


def normalise_number(user: str, is_tel: bool = False) -> str:
    """A phone-number user part as a leading + and digits; anything else unchanged."""
    if is_tel or _PHONE_NUMBER.match(user):
        digits = re.sub(r"\D", "", user)
        if digits:
            return ("+" if user.strip().startswith("+") else "") + digits
    return user


def caller_id(invite: SipMessage) -> CallerId:
    """Who is calling, preferring P-Asserted-Identity over From.

    The number counts as withheld when either identity is anonymous (user
    anonymous/unknown/restricted/unavailable or host anonymous.invalid) or a
    Privacy header asks for id/user/header privacy; then neither number nor
    name is given, even if the network asserted one.
    """
    privacy = invite.header("Privacy") or ""
    tokens = {tok.strip().lower() for tok in re.split(r"[;,]", privacy)}
    withheld = bool(tokens & _PRIVACY_HIDING)

    def parse(value: str | None) -> NameAddr | None:
        if value is None:
            return None
        try:
            return parse_name_addr(value)
        except SipError:
            return None

    from_addr = parse(invite.header("From"))
    pai_values = invite.header_all("P-Asserted-Identity")
    pai_addr = parse(pai_values[0]) if pai_values else None
    for addr in (from_addr, pai_addr):
        if addr is not None and _is_anonymous(addr):
            withheld = True
    if withheld:
        return CallerId(number=None, name=None, withheld=True)
    source = pai_addr or from_addr
    if source is None:
        return CallerId(number=None, name=None, withheld=False)
    user = uri_user(source.uri)
    number = None
    if user is not None:
        number = normalise_number(user, is_tel=_scheme(source.uri)[0] == "tel")
    name = source.display.strip() or (from_addr.display.strip() if from_addr else "")
    return CallerId(number=number or None, name=name or None, withheld=False)


def dialled_number(invite: SipMessage) -> str | None:
    """The number the caller dialled: user part of To, else of the Request-URI."""
    to_value = invite.header("To")
    if to_value is not None:
        try:
            user = uri_user(parse_name_addr(to_value).uri)
        except SipError:
            user = None
        if user:
            return user
    if invite.uri:
        try:
            return uri_user(invite.uri)
        except SipError:
            return None
    return None


def via_branch(message: SipMessage) -> str | None:
    """The branch parameter of a message's top Via (a transaction's key)."""
    via = message.header("Via")
    if not via:
        return None
    for param in via.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "branch":
            return value.strip() or None
    return None


def new_tag() -> str:
    return secrets.token_hex(8)


def new_branch() -> str:
    """A Via branch with the RFC 3261 magic cookie, unique per transaction."""
    return "z9hG4bK" + secrets.token_hex(12)


def new_call_id(host: str) -> str:
    return f"{secrets.token_hex(16)}@{host}"


def _parse_challenge(challenge: str) -> dict[str, str]:
    scheme, _, rest = challenge.strip().partition(" ")
    if scheme.lower() != "digest":
        raise SipError(f"not a Digest challenge: {challenge[:60]!r}")
    params: dict[str, str] = {}
    for item in _split_outside_quotes(rest, ","):
        if not item.strip():
            continue
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise SipError(f"bad challenge parameter: {item.strip()!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        params[key.strip().lower()] = value
    return params


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_DIGESTS: dict[str, Callable[[bytes], hashlib._Hash]] = {
    "MD5": hashlib.md5,
    "SHA-256": hashlib.sha256,
}


def digest_authorization(
    challenge: str,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str | None = None,
    nc: int = 1,
    body: bytes = b"",
) -> str:
    """The Authorization (or Proxy-Authorization) value answering a Digest challenge.

    Supports MD5, MD5-sess, SHA-256 and SHA-256-sess (RFC 2617, RFC 7616) with
    no qop, qop=auth or qop=auth-int (``body`` is hashed for auth-int).
    """
    params = _parse_challenge(challenge)
    realm = params.get("realm")
    nonce = params.get("nonce")
    if realm is None or nonce is None:
        raise SipError("Digest challenge lacks realm or nonce")
    algorithm = params.get("algorithm", "MD5")
    base = algorithm.upper()
    sess = base.endswith("-SESS")
    if sess:
        base = base[: -len("-SESS")]
    if base not in _DIGESTS:
        raise SipError(f"unsupported digest algorithm: {algorithm}")
    digest = _DIGESTS[base]

    def h(text: str | bytes) -> str:
        data = text.encode("utf-8") if isinstance(text, str) else text
        return digest(data).hexdigest()

    offered = [q.strip().lower() for q in params.get("qop", "").split(",") if q.strip()]
    if not offered:
        qop = None
    elif "auth" in offered:
        qop = "auth"
    elif "auth-int" in offered:
        qop = "auth-int"
    else:
        raise SipError(f"unsupported qop: {params['qop']}")
    if cnonce is None and (qop or sess):
        cnonce = secrets.token_hex(8)
    ha1 = h(f"{username}:{realm}:{password}")
    if sess:
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}:{h(body)}" if qop == "auth-int" else f"{method}:{uri}")
    nc_text = f"{nc:08x}"
    if qop:
        response = h(f"{ha1}:{nonce}:{nc_text}:{cnonce}:{qop}:{ha2}")
    else:
        response = h(f"{ha1}:{nonce}:{ha2}")
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(realm)}",
        f"nonce={_quote(nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
    ]
    if "algorithm" in params:
        parts.append(f"algorithm={algorithm}")
    if cnonce is not None and (qop or sess):
        parts.append(f"cnonce={_quote(cnonce)}")
    if qop:
        parts.append(f"qop={qop}")
        parts.append(f"nc={nc_text}")
    if "opaque" in params:
        parts.append(f"opaque={_quote(params['opaque'])}")
    return "Digest " + ", ".join(parts)


_DTMF_DIGITS = set("0123456789*#ABCD")
# RFC 4733 event codes some phones put in Signal= instead of the key itself.
_DTMF_EVENTS = {"10": "*", "11": "#", "12": "A", "13": "B", "14": "C", "15": "D"}


def parse_dtmf_info(content_type: str, body: bytes) -> str | None:
    """The keypad digit in a SIP INFO body, or None if it carries none."""
    kind = content_type.split(";", 1)[0].strip().lower()
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        return None
    if kind == "application/dtmf-relay":
        signal = None
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip().lower() == "signal":
                signal = value.strip()
                break
        if signal is None:
            return None
        signal = _DTMF_EVENTS.get(signal, signal)
    elif kind == "application/dtmf":
        signal = text.strip()
    else:
        return None
    signal = signal.upper()
    return signal if len(signal) == 1 and signal in _DTMF_DIGITS else None
