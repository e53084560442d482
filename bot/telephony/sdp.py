"""SDP offer/answer (RFC 4566, RFC 3264) for the bot's audio calls.

An incoming INVITE carries the caller's SDP offer: where to send RTP, which
codecs (payload types) they can use, whether keypad digits come as
telephone-events, and whether the call is being put on hold. The bot reads
the audio stream, picks a codec from its own preference list, and answers
with one audio stream of its own. Only plain RTP/AVP audio is understood:
a bot that cannot do SRTP must not pretend to answer an encrypted stream.
"""

from __future__ import annotations

from dataclasses import dataclass

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_ANSWER_DIRECTION = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}
# Static payload types (RFC 3551) that may be offered without an rtpmap line.
_STATIC = {
    0: ("PCMU", 8000),
    3: ("GSM", 8000),
    8: ("PCMA", 8000),
    9: ("G722", 8000),
    18: ("G729", 8000),
}
# The codecs the bot can speak: name -> (RTP clock rate, audio sample rate).
# G.722 samples at 16 kHz but its RTP clock is 8000 (RFC 3551 §4.5.2).
KNOWN_CODECS = {"PCMU": (8000, 8000), "PCMA": (8000, 8000), "G722": (8000, 16000)}
_ACCEPTED_PROTOS = {"RTP/AVP"}


class SdpError(ValueError):
    """An SDP body that cannot be used for an audio call."""


@dataclass(frozen=True)
class Codec:
    """An agreed audio codec: its name, payload type and clock/sample rates."""

    name: str
    payload_type: int
    clock_rate: int
    sample_rate: int


@dataclass(frozen=True)
class Offer:
    """What the far end offered for audio."""

    connection_host: str
    audio_port: int
    codecs: list[tuple[int, str, int]]
    dtmf_payload_type: int | None
    direction: str = "sendrecv"
    ptime: int | None = None

    @property
    def on_hold(self) -> bool:
        """True when the far end put the call on hold (sendonly, inactive or c=0.0.0.0)."""
        return self.direction in ("sendonly", "inactive") or self.connection_host == "0.0.0.0"


def _lines(body: bytes | str) -> list[tuple[str, str]]:
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SdpError("SDP is not UTF-8 text") from exc
    lines: list[tuple[str, str]] = []
    for raw in body.splitlines():
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise SdpError(f"not an SDP line: {line[:60]!r}")
        lines.append((line[0], line[2:]))
    return lines


def _connection_host(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"bad c= line: {value!r}")
    return parts[2].split("/", 1)[0]


def parse_offer(body: bytes | str) -> Offer:
    """Read the first audio stream of an SDP offer; raises SdpError if it is unusable."""
    lines = _lines(body)
    if not lines:
        raise SdpError("empty SDP")
    session: list[tuple[str, str]] = []
    media: list[tuple[str, str]] | None = None
    in_session = True
    for kind, value in lines:
        if kind == "m":
            in_session = False
            if media is not None:
                break  # only the first audio stream is used
            if value.split(" ", 1)[0] == "audio":
                media = [(kind, value)]
        elif media is not None:
            media.append((kind, value))
        elif in_session:
            session.append((kind, value))
    if media is None:
        raise SdpError("no audio m= line in the offer")
    fields = media[0][1].split()
    if len(fields) < 4:
        raise SdpError(f"bad m= line: {media[0][1]!r}")
    port_text, proto, formats = fields[1].split("/", 1)[0], fields[2], fields[3:]
    if not port_text.isdigit() or int(port_text) > 65535:
        raise SdpError(f"bad audio port: {fields[1]!r}")
    port = int(port_text)
    if port == 0:
        raise SdpError("the audio stream is rejected (port 0)")
    if proto.upper() not in _ACCEPTED_PROTOS:
        raise SdpError(f"unsupported media transport {proto!r} (only RTP/AVP)")

    def attributes(section: list[tuple[str, str]]) -> list[tuple[str, str]]:
        result = []
        for kind, value in section:
            if kind == "a":
                name, _, rest = value.partition(":")
                result.append((name.strip().lower(), rest.strip()))
        return result

    media_attrs = attributes(media[1:])
    session_attrs = attributes(session)

    connections = [v for k, v in media if k == "c"] or [v for k, v in session if k == "c"]
    if not connections:
        raise SdpError("no c= line for the audio stream")
    host = _connection_host(connections[0])

    rtpmap: dict[int, tuple[str, int]] = {}
    for name, value in media_attrs:
        if name != "rtpmap":
            continue
        pt_text, _, encoding = value.partition(" ")
        parts = encoding.strip().split("/")
        if not pt_text.isdigit() or len(parts) < 2 or not parts[1].isdigit():
            raise SdpError(f"bad rtpmap: {value!r}")
        rtpmap[int(pt_text)] = (parts[0].upper(), int(parts[1]))

    codecs: list[tuple[int, str, int]] = []
    dtmf: int | None = None
    for fmt in formats:
        if not fmt.isdigit() or int(fmt) > 127:
            raise SdpError(f"bad payload type: {fmt!r}")
        pt = int(fmt)
        known = rtpmap.get(pt) or _STATIC.get(pt)
        if known is None:
            continue  # a dynamic type without rtpmap cannot be used
        codecs.append((pt, known[0], known[1]))
        if known == ("TELEPHONE-EVENT", 8000) and dtmf is None:
            dtmf = pt

    def find(attrs: list[tuple[str, str]]) -> str | None:
        return next((name for name, _ in attrs if name in DIRECTIONS), None)

    direction = find(media_attrs) or find(session_attrs) or "sendrecv"

    ptime = None
    ptimes = [v for n, v in media_attrs if n == "ptime"]
    ptimes = ptimes or [v for n, v in session_attrs if n == "ptime"]
    if ptimes:
        try:
            ptime = int(float(ptimes[0]))
        except ValueError as exc:
            raise SdpError(f"bad ptime: {ptimes[0]!r}") from exc
    return Offer(host, port, codecs, dtmf, direction, ptime)


def choose_codec(offer: Offer, supported: list[str]) -> Codec | None:
    """The first of the bot's preferred codecs that the offer has, or None."""
    for wanted in supported:
        name = wanted.upper()
        if name not in KNOWN_CODECS:
            raise SdpError(f"the bot cannot speak codec {wanted!r}")
        clock, sample = KNOWN_CODECS[name]
        for pt, offered, rate in offer.codecs:
            if offered == name and rate == clock:
                return Codec(name, pt, clock, sample)
    return None


def offer_codecs(names: list[str]) -> list[Codec]:
    """The bot's codecs, by preference, as it offers them in a call it places
    (each on its static payload type, RFC 3551)."""
    codecs = []
    for wanted in names:
        name = wanted.upper()
        if name not in KNOWN_CODECS:
            raise SdpError(f"the bot cannot speak codec {wanted!r}")
        clock, sample = KNOWN_CODECS[name]
        pt = next(pt for pt, (static, _rate) in _STATIC.items() if static == name)
        codecs.append(Codec(name, pt, clock, sample))
    return codecs


def answer_codec(answer: Offer, offered: list[Codec]) -> Codec | None:
    """The codec of a call the bot placed: the first in the far end's answer
    that the bot offered (the answerer's order wins, RFC 3264 §6.1), on the
    answer's payload type; None when the answer has none of them."""
    for pt, name, rate in answer.codecs:
        for codec in offered:
            if codec.name == name and codec.clock_rate == rate:
                return Codec(codec.name, pt, codec.clock_rate, codec.sample_rate)
    return None


def answer_direction(offered: str) -> str:
    """The direction to answer with (RFC 3264 §6.1): the mirror of the offered one."""
    try:
        return _ANSWER_DIRECTION[offered.lower()]
    except KeyError:
        raise SdpError(f"unknown direction: {offered!r}") from None


def _check_codec(codec: Codec) -> None:
    if codec.name not in KNOWN_CODECS:
        raise SdpError(f"unknown codec: {codec.name!r}")
    _check_pt(codec.payload_type)


def _check_pt(pt: int) -> None:
    if not 0 <= pt <= 127:
        raise SdpError(f"bad payload type: {pt}")


def _session_head(local_host: str, local_port: int, session_id: int, version: int) -> list[str]:
    if not 0 < local_port < 65536:
        raise SdpError(f"bad local port: {local_port}")
    if not local_host or any(ch.isspace() for ch in local_host):
        raise SdpError(f"bad local host: {local_host!r}")
    family = "IP6" if ":" in local_host else "IP4"
    return [
        "v=0",
        f"o=voicebot {session_id} {version} IN {family} {local_host}",
        "s=voicebot",
        f"c=IN {family} {local_host}",
        "t=0 0",
    ]


def _media(
    local_port: int, codecs: list[Codec], dtmf_payload_type: int | None, direction: str
) -> list[str]:
    pts = [str(c.payload_type) for c in codecs]
    if dtmf_payload_type is not None:
        _check_pt(dtmf_payload_type)
        if dtmf_payload_type in (c.payload_type for c in codecs):
            raise SdpError(f"DTMF payload type {dtmf_payload_type} clashes with a codec")
        pts.append(str(dtmf_payload_type))
    lines = [f"m=audio {local_port} RTP/AVP {' '.join(pts)}"]
    lines += [f"a=rtpmap:{c.payload_type} {c.name}/{c.clock_rate}" for c in codecs]
    if dtmf_payload_type is not None:
        lines.append(f"a=rtpmap:{dtmf_payload_type} telephone-event/8000")
        lines.append(f"a=fmtp:{dtmf_payload_type} 0-16")
    lines += ["a=ptime:20", f"a={direction}"]
    return lines


def build_answer(
    local_host: str,
    local_port: int,
    codec: Codec,
    dtmf_payload_type: int | None,
    direction: str,
    session_id: int,
    version: int,
) -> bytes:
    """A complete SDP answer; ``direction`` is the offered one, answered per RFC 3264."""
    _check_codec(codec)
    lines = _session_head(local_host, local_port, session_id, version)
    lines += _media(local_port, [codec], dtmf_payload_type, answer_direction(direction))
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def build_offer(
    local_host: str,
    local_port: int,
    codecs: list[Codec],
    dtmf_payload_type: int | None = 101,
    *,
    session_id: int,
    version: int,
) -> bytes:
    """A complete SDP offer (sendrecv) for a call the bot places."""
    if not codecs:
        raise SdpError("an offer needs at least one codec")
    for codec in codecs:
        _check_codec(codec)
    lines = _session_head(local_host, local_port, session_id, version)
    lines += _media(local_port, codecs, dtmf_payload_type, "sendrecv")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")
