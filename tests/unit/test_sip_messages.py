from __future__ import annotations

import pytest

from bot.telephony.sip import (
    CallerId,
    NameAddr,
    SipError,
    SipMessage,
    caller_id,
    dialled_number,
    digest_authorization,
    new_branch,
    new_call_id,
    new_tag,
    parse_dtmf_info,
    parse_name_addr,
    request,
    response_to,
    uri_host_port,
    uri_user,
)

SDP = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"


def invite(*extra: str, from_: str = '"Alice" <sip:+44 20 7946 0000@pbx.example>;tag=a1') -> bytes:
    lines = [
        "INVITE sip:bot@10.0.0.2:5060 SIP/2.0",
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKone",
        "Via: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKtwo",
        "Max-Forwards: 70",
        f"From: {from_}",
        "To: <sip:08001234@10.0.0.2>",
        "Call-ID: abc123@10.0.0.1",
        "CSeq: 1 INVITE",
        "Contact: <sip:alice@10.0.0.1>",
        "Content-Type: application/sdp",
        *extra,
        f"Content-Length: {len(SDP)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + SDP


def parsed(*extra: str, **kwargs: str) -> SipMessage:
    return SipMessage.parse(invite(*extra, **kwargs))


# --- parsing -----------------------------------------------------------------


def test_parses_a_request() -> None:
    msg = parsed()
    assert msg.is_request
    assert msg.method == "INVITE"
    assert msg.uri == "sip:bot@10.0.0.2:5060"
    assert msg.status is None
    assert msg.call_id == "abc123@10.0.0.1"
    assert msg.cseq == (1, "INVITE")
    assert msg.body == SDP
    assert msg.header("content-type") == "application/sdp"
    assert msg.header("CALL-ID") == "abc123@10.0.0.1"
    assert msg.header("X-Missing") is None


def test_parses_a_response() -> None:
    data = (
        b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@h>;tag=1\r\n"
        b"To: <sip:b@h>;tag=2\r\nCall-ID: x\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    msg = SipMessage.parse(data)
    assert not msg.is_request
    assert (msg.status, msg.reason) == (180, "Ringing")
    assert msg.method is None and msg.uri is None
    assert msg.body == b""


def test_reason_phrase_may_have_spaces_or_be_empty() -> None:
    base = b"\r\nVia: v\r\nFrom: <sip:a@h>\r\nTo: <sip:b@h>\r\nCall-ID: x\r\nCSeq: 1 BYE\r\n\r\n"
    assert SipMessage.parse(b"SIP/2.0 486 Busy Here" + base).reason == "Busy Here"
    assert SipMessage.parse(b"SIP/2.0 200" + base).reason == ""


def test_compact_headers_are_expanded() -> None:
    data = (
        b"BYE sip:bot@h SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bKa\r\nf: <sip:a@h>;tag=1\r\n"
        b"t: <sip:b@h>;tag=2\r\ni: cid\r\nCSeq: 2 BYE\r\nm: <sip:a@h>\r\nk: timer\r\n"
        b"x: 1800\r\nu: talk\r\no: refer\r\nr: <sip:c@h>\r\nb: <sip:a@h>\r\ns: hi\r\n"
        b"e: gzip\r\nc: text/plain\r\nl: 2\r\n\r\nokEXTRA"
    )
    msg = SipMessage.parse(data)
    assert msg.call_id == "cid"
    assert msg.header("From") == "<sip:a@h>;tag=1"
    assert msg.header("Contact") == "<sip:a@h>"
    assert msg.header("Supported") == "timer"
    assert msg.header("Session-Expires") == "1800"
    assert msg.header("Allow-Events") == "talk"
    assert msg.header("Event") == "refer"
    assert msg.header("Refer-To") == "<sip:c@h>"
    assert msg.header("Referred-By") == "<sip:a@h>"
    assert msg.header("Subject") == "hi"
    assert msg.header("Content-Encoding") == "gzip"
    assert msg.header("Content-Type") == "text/plain"
    assert msg.header("i") == "cid"  # compact lookups work too
    assert msg.body == b"ok"  # Content-Length cuts off trailing bytes
    out = msg.to_bytes().decode()
    assert "Call-ID: cid\r\n" in out and "Content-Type: text/plain\r\n" in out
    assert "\r\ni:" not in out


def test_folded_headers_and_lf_line_ends_are_tolerated() -> None:
    data = (
        b"OPTIONS sip:bot@h SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\nFrom: <sip:a@h>\n"
        b" ;tag=1\nTo: <sip:b@h>\nCall-ID: x\nCSeq: 3 OPTIONS\nSubject: one\n\ttwo\n\n"
    )
    msg = SipMessage.parse(data)
    assert msg.header("From") == "<sip:a@h> ;tag=1"
    assert msg.header("Subject") == "one two"
    assert msg.cseq == (3, "OPTIONS")


def test_leading_keepalive_crlfs_are_skipped() -> None:
    assert SipMessage.parse(b"\r\n\r\n" + invite()).method == "INVITE"


def test_missing_content_length_takes_rest_of_datagram() -> None:
    data = invite().replace(f"Content-Length: {len(SDP)}\r\n".encode(), b"")
    assert SipMessage.parse(data).body == SDP


@pytest.mark.parametrize(
    "data, error",
    [
        (b"", "empty"),
        (b"\r\n\r\n", "empty"),
        (b"\x00\xff\xfe garbage", "UTF-8|not a SIP"),
        (b"hello world\r\n\r\n", "not a SIP"),
        (b"INVITE sip:a@h HTTP/1.1\r\n\r\n", "not a SIP"),
        (b"SIP/2.0 99 Low\r\n\r\n", "not a SIP"),
        (b"SIP/2.0 abc OK\r\n\r\n", "not a SIP"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not a SIP"),
    ],
)
def test_garbage_is_rejected(data: bytes, error: str) -> None:
    with pytest.raises(SipError, match=error):
        SipMessage.parse(data)


@pytest.mark.parametrize("header", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_missing_required_header_is_rejected(header: str) -> None:
    lines = [line for line in invite().split(b"\r\n") if not line.startswith(header.encode())]
    with pytest.raises(SipError, match=f"missing {header}"):
        SipMessage.parse(b"\r\n".join(lines))


def test_truncated_body_is_rejected() -> None:
    with pytest.raises(SipError, match="shorter than Content-Length"):
        SipMessage.parse(invite()[:-5])


def test_bad_content_length_is_rejected() -> None:
    data = invite().replace(f"Content-Length: {len(SDP)}".encode(), b"Content-Length: lots")
    with pytest.raises(SipError, match="Content-Length"):
        SipMessage.parse(data)


def test_bad_cseq_is_rejected() -> None:
    with pytest.raises(SipError, match="CSeq"):
        SipMessage.parse(invite().replace(b"CSeq: 1 INVITE", b"CSeq: one INVITE"))


def test_oversized_message_is_rejected() -> None:
    with pytest.raises(SipError, match="limit"):
        SipMessage.parse(invite() + b"x" * 70_000)


def test_header_line_without_colon_is_rejected() -> None:
    with pytest.raises(SipError, match="colon"):
        SipMessage.parse(invite("NoColonHere"))


def test_continuation_before_any_header_is_rejected() -> None:
    with pytest.raises(SipError, match="continuation"):
        SipMessage.parse(b"BYE sip:a@h SIP/2.0\r\n folded\r\n\r\n")


# --- header access and serialisation -------------------------------------------


def test_header_all_splits_comma_separated_via() -> None:
    msg = parsed()
    msg.set_header("Via", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2")
    msg.add_header("v", "SIP/2.0/UDP c;branch=z9hG4bK3")
    assert msg.header_all("via") == [
        "SIP/2.0/UDP a;branch=z9hG4bK1",
        "SIP/2.0/UDP b;branch=z9hG4bK2",
        "SIP/2.0/UDP c;branch=z9hG4bK3",
    ]


def test_header_all_keeps_commas_in_quoted_display_names() -> None:
    msg = parsed('P-Asserted-Identity: "Smith, Jo" <sip:1@h>, <tel:+441234>')
    assert msg.header_all("P-Asserted-Identity") == ['"Smith, Jo" <sip:1@h>', "<tel:+441234>"]


def test_set_header_replaces_all_occurrences() -> None:
    msg = parsed()
    msg.set_header("via", "SIP/2.0/UDP only;branch=z9hG4bKz")
    assert msg.header_all("Via") == ["SIP/2.0/UDP only;branch=z9hG4bKz"]
    msg.set_header("X-New", "1")
    assert msg.header("x-new") == "1"


def test_to_bytes_round_trips_and_computes_content_length() -> None:
    msg = parsed()
    msg.body = b"new body"
    data = msg.to_bytes()
    assert data.startswith(b"INVITE sip:bot@10.0.0.2:5060 SIP/2.0\r\n")
    assert b"Content-Length: 8\r\n\r\nnew body" in data
    assert data.count(b"Content-Length") == 1
    again = SipMessage.parse(data)
    assert again.body == b"new body"
    assert again.header_all("Via") == msg.header_all("Via")


def test_to_bytes_uses_canonical_names() -> None:
    msg = request(
        "OPTIONS",
        "sip:h",
        [
            ("call-id", "x"),
            ("cseq", "1 OPTIONS"),
            ("www-authenticate", "y"),
            ("max-forwards", "70"),
        ],
    )
    out = msg.to_bytes().decode()
    assert "Call-ID: x" in out and "CSeq: 1 OPTIONS" in out
    assert "WWW-Authenticate: y" in out and "Max-Forwards: 70" in out


def test_request_validates_method_and_uri() -> None:
    with pytest.raises(SipError, match="method"):
        request("IN VITE", "sip:h", [])
    with pytest.raises(SipError, match="Request-URI"):
        request("INVITE", "sip: h", [])


def test_message_with_neither_method_nor_status_cannot_be_sent() -> None:
    with pytest.raises(SipError):
        SipMessage().to_bytes()


# --- responses -----------------------------------------------------------------


def test_response_copies_dialog_headers() -> None:
    req = parsed("Record-Route: <sip:proxy;lr>")
    resp = response_to(
        req, 200, "OK", to_tag="bot1", body=b"v=0\r\n", content_type="application/sdp"
    )
    assert (resp.status, resp.reason) == (200, "OK")
    assert resp.header_all("Via") == req.header_all("Via")
    assert resp.header("From") == req.header("From")
    assert resp.header("To") == "<sip:08001234@10.0.0.2>;tag=bot1"
    assert resp.call_id == req.call_id
    assert resp.cseq == (1, "INVITE")
    assert resp.header("Record-Route") == "<sip:proxy;lr>"
    assert resp.header("Content-Type") == "application/sdp"
    assert resp.header("Contact") is None
    parsed_resp = SipMessage.parse(resp.to_bytes())
    assert parsed_resp.body == b"v=0\r\n"
    assert parsed_resp.to_bytes().startswith(b"SIP/2.0 200 OK\r\n")


def test_response_keeps_existing_to_tag() -> None:
    req = parsed()
    req.set_header("To", "<sip:b@h>;tag=existing")
    assert response_to(req, 200, "OK", to_tag="new").header("To") == "<sip:b@h>;tag=existing"


def test_response_without_tag_and_trying() -> None:
    resp = response_to(parsed("Record-Route: <sip:p;lr>"), 100, "Trying")
    assert resp.header("To") == "<sip:08001234@10.0.0.2>"
    assert resp.header("Record-Route") is None


def test_response_rejects_bad_input() -> None:
    req = parsed()
    with pytest.raises(SipError, match="status"):
        response_to(req, 700, "Nope")
    with pytest.raises(SipError, match="content type"):
        response_to(req, 200, "OK", body=b"x")
    resp = response_to(req, 200, "OK")
    with pytest.raises(SipError, match="request"):
        response_to(resp, 200, "OK")


# --- addresses -----------------------------------------------------------------


def test_parse_name_addr_forms() -> None:
    assert parse_name_addr('"Jo \\"JJ\\" Smith" <sip:u@h;x=y>;tag=abc') == NameAddr(
        'Jo "JJ" Smith', "sip:u@h;x=y", {"tag": "abc"}
    )
    assert parse_name_addr("<sip:u@h>") == NameAddr("", "sip:u@h", {})
    assert parse_name_addr("sip:u@h;tag=x") == NameAddr("", "sip:u@h", {"tag": "x"})
    assert parse_name_addr("Bob <sip:b@h>;TAG=1;lr") == NameAddr(
        "Bob", "sip:b@h", {"tag": "1", "lr": ""}
    )


@pytest.mark.parametrize(
    "value", ["", "   ", '"unterminated <sip:a@h>', '"Name" sip:a@h', "<sip:a@h", "<>", "nouri"]
)
def test_parse_name_addr_rejects_bad_values(value: str) -> None:
    with pytest.raises(SipError):
        parse_name_addr(value)


@pytest.mark.parametrize(
    "uri, user",
    [
        ("sip:alice@h", "alice"),
        ("sips:alice:secret@h:5061", "alice"),
        ("sip:+15551234;npdi@h;user=phone", "+15551234"),
        ("tel:+1-201-555-0123;phone-context=x", "+1-201-555-0123"),
        ("sip:h", None),
        ("sip:%2B44%20123@h", "+44 123"),
        ("mailto:a@h", None),
        ("<sip:bob@h>", "bob"),
    ],
)
def test_uri_user(uri: str, user: str | None) -> None:
    assert uri_user(uri) == user


def test_uri_user_needs_a_scheme() -> None:
    with pytest.raises(SipError, match="scheme"):
        uri_user("alice")


@pytest.mark.parametrize(
    "uri, host_port",
    [
        ("sip:alice@pbx.example", ("pbx.example", 5060)),
        ("sip:alice@10.0.0.1:5070;transport=udp", ("10.0.0.1", 5070)),
        ("sip:pbx.example", ("pbx.example", 5060)),
        ("sips:a@h", ("h", 5061)),
        ("sip:a@[2001:db8::1]:5080", ("2001:db8::1", 5080)),
        ("sip:a@[2001:db8::1]", ("2001:db8::1", 5060)),
        ("sip:a@h?subject=x", ("h", 5060)),
    ],
)
def test_uri_host_port(uri: str, host_port: tuple[str, int]) -> None:
    assert uri_host_port(uri) == host_port


@pytest.mark.parametrize("uri", ["tel:+123", "sip:a@h:port", "sip:a@h:70000", "sip:a@", "sip:[::1"])
def test_uri_host_port_rejects_bad_uris(uri: str) -> None:
    with pytest.raises(SipError):
        uri_host_port(uri)


# --- caller id -----------------------------------------------------------------


def test_caller_id_from_from_header_normalises_number() -> None:
    assert caller_id(parsed()) == CallerId("+442079460000", "Alice", False)


def test_caller_id_prefers_p_asserted_identity() -> None:
    msg = parsed('P-Asserted-Identity: "Carrier Name" <tel:+1 (201) 555-0123>')
    assert caller_id(msg) == CallerId("+12015550123", "Carrier Name", False)


def test_caller_id_pai_without_name_keeps_from_display() -> None:
    msg = parsed("P-Asserted-Identity: <sip:0201.555.0123@carrier;user=phone>")
    assert caller_id(msg) == CallerId("02015550123", "Alice", False)


def test_caller_id_non_numeric_user_is_kept_as_is() -> None:
    msg = parsed(from_="<sip:Alice.Smith@pbx>;tag=1")
    assert caller_id(msg) == CallerId("Alice.Smith", None, False)


@pytest.mark.parametrize(
    "from_",
    [
        '"Anonymous" <sip:anonymous@anonymous.invalid>;tag=1',
        "<sip:Anonymous@pbx.example>;tag=1",
        "<sip:UNKNOWN@pbx.example>;tag=1",
        "<sip:restricted@pbx>;tag=1",
        "<sip:unavailable@pbx>;tag=1",
        "<sip:12345@anonymous.invalid>;tag=1",
        "sip:anonymous@pbx;tag=1",
    ],
)
def test_withheld_numbers(from_: str) -> None:
    assert caller_id(parsed(from_=from_)) == CallerId(None, None, True)


@pytest.mark.parametrize("privacy", ["id", "user", "header", "ID", "header;id", "none, id"])
def test_privacy_header_withholds_even_with_pai(privacy: str) -> None:
    msg = parsed("P-Asserted-Identity: <tel:+15551234>", f"Privacy: {privacy}")
    assert caller_id(msg) == CallerId(None, None, True)


def test_privacy_none_does_not_withhold() -> None:
    assert caller_id(parsed("Privacy: none")).withheld is False


def test_anonymous_from_with_asserted_identity_stays_withheld() -> None:
    msg = parsed("P-Asserted-Identity: <tel:+15551234>", from_="<sip:anonymous@x>;tag=1")
    assert caller_id(msg).withheld


def test_anonymous_pai_is_withheld() -> None:
    msg = parsed("P-Asserted-Identity: <sip:anonymous@anonymous.invalid>")
    assert caller_id(msg) == CallerId(None, None, True)


def test_caller_id_without_user_part() -> None:
    assert caller_id(parsed(from_="<sip:pbx.example>;tag=1")) == CallerId(None, None, False)


def test_dialled_number() -> None:
    msg = parsed()
    assert dialled_number(msg) == "08001234"
    msg.set_header("To", "<sip:10.0.0.2>")
    assert dialled_number(msg) == "bot"
    msg.set_header("To", "garbage")
    assert dialled_number(msg) == "bot"
    msg.uri = "sip:10.0.0.2"
    assert dialled_number(msg) is None


# --- identifiers ---------------------------------------------------------------


def test_identifiers_are_random_and_well_formed() -> None:
    assert new_branch().startswith("z9hG4bK")
    assert new_branch() != new_branch()
    assert new_tag() != new_tag() and len(new_tag()) >= 8
    call_id = new_call_id("10.0.0.2")
    assert call_id.endswith("@10.0.0.2") and call_id != new_call_id("10.0.0.2")


# --- digest authentication -----------------------------------------------------

RFC2617_CHALLENGE = (
    'Digest realm="testrealm@host.com", qop="auth,auth-int", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)


def _params(value: str) -> dict[str, str]:
    assert value.startswith("Digest ")
    result = {}
    for item in value[len("Digest ") :].split(", "):
        key, _, val = item.partition("=")
        result[key] = val.strip('"')
    return result


def test_digest_matches_rfc2617_example() -> None:
    value = digest_authorization(
        RFC2617_CHALLENGE, "GET", "/dir/index.html", "Mufasa", "Circle Of Life", cnonce="0a4f113b"
    )
    params = _params(value)
    assert params["response"] == "6629fae49393a05397450978507c4ef1"
    assert params["username"] == "Mufasa"
    assert params["realm"] == "testrealm@host.com"
    assert params["uri"] == "/dir/index.html"
    assert params["qop"] == "auth"
    assert params["nc"] == "00000001"
    assert params["cnonce"] == "0a4f113b"
    assert params["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41"
    assert "qop=auth," in value and "nc=00000001" in value  # unquoted, as RFC 2617 shows


def test_digest_without_qop() -> None:
    # MD5(MD5("u:r:p"):n:MD5("REGISTER:sip:r")) computed independently.
    import hashlib

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    expected = md5(f"{md5('u:r:p')}:n:{md5('REGISTER:sip:r')}")
    value = digest_authorization('Digest realm="r", nonce="n"', "REGISTER", "sip:r", "u", "p")
    params = _params(value)
    assert params["response"] == expected
    assert "cnonce" not in params and "qop" not in params and "nc" not in params


def test_digest_md5_sess_and_sha256() -> None:
    import hashlib

    def h(text: str, algo: str = "md5") -> str:
        return hashlib.new(algo, text.encode()).hexdigest()

    value = digest_authorization(
        'Digest realm="r", nonce="n", qop="auth", algorithm=MD5-sess',
        "INVITE",
        "sip:x",
        "u",
        "p",
        cnonce="c",
        nc=2,
    )
    ha1 = h(f"{h('u:r:p')}:n:c")
    assert _params(value)["response"] == h(f"{ha1}:n:00000002:c:auth:{h('INVITE:sip:x')}")
    assert "algorithm=MD5-sess" in value

    value = digest_authorization(
        'Digest realm="r", nonce="n", qop="auth", algorithm=SHA-256',
        "INVITE",
        "sip:x",
        "u",
        "p",
        cnonce="c",
    )
    s = "sha256"
    expected = h(f"{h('u:r:p', s)}:n:00000001:c:auth:{h('INVITE:sip:x', s)}", s)
    assert _params(value)["response"] == expected


def test_digest_auth_int_hashes_body() -> None:
    import hashlib

    def md5(text: str | bytes) -> str:
        return hashlib.md5(text if isinstance(text, bytes) else text.encode()).hexdigest()

    value = digest_authorization(
        'Digest realm="r", nonce="n", qop="auth-int"',
        "INVITE",
        "sip:x",
        "u",
        "p",
        cnonce="c",
        body=b"v=0\r\n",
    )
    ha2 = md5(f"INVITE:sip:x:{md5(b'v=0' + bytes([13, 10]))}")
    assert _params(value)["response"] == md5(f"{md5('u:r:p')}:n:00000001:c:auth-int:{ha2}")


def test_digest_generates_cnonce_when_needed() -> None:
    value = digest_authorization(
        'Digest realm="r", nonce="n", qop="auth"', "INVITE", "sip:x", "u", "p"
    )
    assert len(_params(value)["cnonce"]) >= 8


@pytest.mark.parametrize(
    "challenge, error",
    [
        ('Basic realm="r"', "not a Digest"),
        ('Digest nonce="n"', "realm or nonce"),
        ('Digest realm="r"', "realm or nonce"),
        ('Digest realm="r", nonce="n", algorithm=SHA-512-256', "algorithm"),
        ('Digest realm="r", nonce="n", qop="auth-conf"', "qop"),
        ('Digest realm="r", nonce', "parameter"),
    ],
)
def test_digest_rejects_bad_challenges(challenge: str, error: str) -> None:
    with pytest.raises(SipError, match=error):
        digest_authorization(challenge, "REGISTER", "sip:r", "u", "p")


# --- DTMF over SIP INFO --------------------------------------------------------


@pytest.mark.parametrize(
    "content_type, body, digit",
    [
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", "5"),
        ("Application/DTMF-Relay", b"Signal= *\nDuration= 250", "*"),
        ("application/dtmf-relay", b"signal=#\r\n", "#"),
        ("application/dtmf-relay", b"Signal=a\r\n", "A"),
        ("application/dtmf-relay", b"Signal=11\r\n", "#"),
        ("application/dtmf-relay", b"Signal=10\r\n", "*"),
        ("application/dtmf", b"7", "7"),
        ("application/dtmf; charset=x", b" D\r\n", "D"),
        ("application/dtmf-relay", b"Duration=160\r\n", None),
        ("application/dtmf-relay", b"Signal=E\r\n", None),
        ("application/dtmf-relay", b"Signal=99\r\n", None),
        ("application/dtmf", b"", None),
        ("application/dtmf", b"12", None),
        ("application/dtmf", b"\xff", None),
        ("text/plain", b"5", None),
        ("application/sdp", b"Signal=5", None),
    ],
)
def test_parse_dtmf_info(content_type: str, body: bytes, digit: str | None) -> None:
    assert parse_dtmf_info(content_type, body) == digit
