from __future__ import annotations

import pytest

from bot.telephony.sdp import (
    Codec,
    Offer,
    SdpError,
    answer_codec,
    answer_direction,
    build_answer,
    build_offer,
    choose_codec,
    offer_codecs,
    parse_offer,
)

OFFER = (
    "v=0\r\n"
    "o=alice 2890844526 2890844526 IN IP4 10.0.0.1\r\n"
    "s=-\r\n"
    "c=IN IP4 10.0.0.1\r\n"
    "t=0 0\r\n"
    "m=audio 49170 RTP/AVP 0 8 9 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=ptime:20\r\n"
    "a=sendrecv\r\n"
)

G722 = Codec("G722", 9, 8000, 16000)
PCMU = Codec("PCMU", 0, 8000, 8000)
PCMA = Codec("PCMA", 8, 8000, 8000)


def test_parses_a_typical_offer() -> None:
    offer = parse_offer(OFFER.encode())
    assert offer == Offer(
        connection_host="10.0.0.1",
        audio_port=49170,
        codecs=[
            (0, "PCMU", 8000),
            (8, "PCMA", 8000),
            (9, "G722", 8000),
            (101, "TELEPHONE-EVENT", 8000),
        ],
        dtmf_payload_type=101,
        direction="sendrecv",
        ptime=20,
    )
    assert not offer.on_hold


def test_accepts_str_and_lf_only_line_ends() -> None:
    assert parse_offer(OFFER.replace("\r\n", "\n")).audio_port == 49170


def test_static_payload_types_need_no_rtpmap() -> None:
    offer = parse_offer("v=0\nc=IN IP4 h\nm=audio 4000 RTP/AVP 8 0 9\n")
    assert offer.codecs == [(8, "PCMA", 8000), (0, "PCMU", 8000), (9, "G722", 8000)]
    assert offer.dtmf_payload_type is None
    assert offer.ptime is None
    assert offer.direction == "sendrecv"


def test_dynamic_payload_types_and_unmapped_ones() -> None:
    offer = parse_offer(
        "v=0\nc=IN IP4 h\nm=audio 4000 RTP/AVP 96 97 98 100\n"
        "a=rtpmap:96 opus/48000/2\na=rtpmap:97 pcmu/8000\na=rtpmap:100 telephone-event/8000\n"
    )
    assert offer.codecs == [(96, "OPUS", 48000), (97, "PCMU", 8000), (100, "TELEPHONE-EVENT", 8000)]
    assert offer.dtmf_payload_type == 100


def test_telephone_event_at_other_rate_is_not_dtmf() -> None:
    offer = parse_offer(
        "v=0\nc=IN IP4 h\nm=audio 4000 RTP/AVP 0 101 102\n"
        "a=rtpmap:101 telephone-event/48000\na=rtpmap:102 telephone-event/8000\n"
    )
    assert offer.dtmf_payload_type == 102


def test_media_level_connection_and_attributes_win() -> None:
    offer = parse_offer(
        "v=0\nc=IN IP4 1.1.1.1\na=sendonly\na=ptime:30\nt=0 0\n"
        "m=audio 5000 RTP/AVP 0\nc=IN IP4 2.2.2.2\na=recvonly\na=ptime:40\n"
    )
    assert (offer.connection_host, offer.direction, offer.ptime) == ("2.2.2.2", "recvonly", 40)


def test_session_level_attributes_are_the_fallback() -> None:
    offer = parse_offer(
        "v=0\nc=IN IP4 1.1.1.1/127\na=inactive\na=ptime:30\nm=audio 5000 RTP/AVP 0\n"
    )
    assert (offer.connection_host, offer.direction, offer.ptime) == ("1.1.1.1", "inactive", 30)


def test_ipv6_connection() -> None:
    assert parse_offer("v=0\nc=IN IP6 2001:db8::1\nm=audio 5000 RTP/AVP 0\n").connection_host == (
        "2001:db8::1"
    )


def test_first_audio_stream_is_used_and_video_ignored() -> None:
    offer = parse_offer(
        "v=0\nc=IN IP4 h\nm=video 6000 RTP/AVP 96\na=rtpmap:96 H264/90000\na=sendonly\n"
        "m=audio 5000 RTP/AVP 0\na=sendrecv\nm=audio 7000 RTP/AVP 8\n"
    )
    assert (offer.audio_port, offer.codecs, offer.direction) == (
        5000,
        [(0, "PCMU", 8000)],
        "sendrecv",
    )


@pytest.mark.parametrize(
    "sdp",
    [
        "v=0\nc=IN IP4 h\na=sendonly\nm=audio 5000 RTP/AVP 0\n",
        "v=0\nc=IN IP4 h\nm=audio 5000 RTP/AVP 0\na=inactive\n",
        "v=0\nc=IN IP4 0.0.0.0\nm=audio 5000 RTP/AVP 0\n",
    ],
)
def test_hold_offers(sdp: str) -> None:
    assert parse_offer(sdp).on_hold


def test_recvonly_is_not_hold() -> None:
    assert not parse_offer("v=0\nc=IN IP4 h\nm=audio 5000 RTP/AVP 0\na=recvonly\n").on_hold


@pytest.mark.parametrize(
    "sdp, error",
    [
        ("", "empty"),
        (b"\xff\xfe\x00", "UTF-8"),
        ("this is not sdp", "not an SDP line"),
        ("v=0\nc=IN IP4 h\nm=video 5000 RTP/AVP 96\n", "no audio"),
        ("v=0\nc=IN IP4 h\n", "no audio"),
        ("v=0\nm=audio 5000 RTP/AVP 0\n", "no c= line"),
        ("v=0\nc=IN IP4\nm=audio 5000 RTP/AVP 0\n", "bad c= line"),
        ("v=0\nc=IN IP4 h\nm=audio 0 RTP/AVP 0\n", "rejected"),
        ("v=0\nc=IN IP4 h\nm=audio abc RTP/AVP 0\n", "bad audio port"),
        ("v=0\nc=IN IP4 h\nm=audio 70000 RTP/AVP 0\n", "bad audio port"),
        ("v=0\nc=IN IP4 h\nm=audio 5000 RTP/AVP\n", "bad m= line"),
        ("v=0\nc=IN IP4 h\nm=audio 5000 RTP/SAVP 0\n", "transport"),
        ("v=0\nc=IN IP4 h\nm=audio 5000 RTP/AVP x\n", "payload type"),
        ("v=0\nc=IN IP4 h\nm=audio 5000 RTP/AVP 200\n", "payload type"),
        ("v=0\nc=IN IP4 h\nm=audio 5000 RTP/AVP 96\na=rtpmap:96 opus\n", "rtpmap"),
        ("v=0\nc=IN IP4 h\nm=audio 5000 RTP/AVP 0\na=ptime:soon\n", "ptime"),
    ],
)
def test_bad_offers_are_rejected(sdp: str | bytes, error: str) -> None:
    with pytest.raises(SdpError, match=error):
        parse_offer(sdp)


def test_port_with_count_is_accepted() -> None:
    assert parse_offer("v=0\nc=IN IP4 h\nm=audio 5000/2 RTP/AVP 0\n").audio_port == 5000


# --- codec choice ----------------------------------------------------------------


def test_choose_codec_follows_the_bots_preference() -> None:
    offer = parse_offer(OFFER)
    assert choose_codec(offer, ["G722", "PCMU", "PCMA"]) == G722
    assert choose_codec(offer, ["pcma", "PCMU"]) == PCMA


def test_choose_codec_uses_offered_dynamic_payload_type() -> None:
    offer = parse_offer("v=0\nc=IN IP4 h\nm=audio 4000 RTP/AVP 112 0\na=rtpmap:112 G722/8000\n")
    assert choose_codec(offer, ["G722", "PCMU"]) == Codec("G722", 112, 8000, 16000)


def test_choose_codec_ignores_wrong_clock_rate() -> None:
    offer = parse_offer("v=0\nc=IN IP4 h\nm=audio 4000 RTP/AVP 96 8\na=rtpmap:96 PCMU/16000\n")
    assert choose_codec(offer, ["PCMU", "PCMA"]) == PCMA


def test_no_common_codec() -> None:
    offer = parse_offer(
        "v=0\nc=IN IP4 h\nm=audio 4000 RTP/AVP 96 18 101\na=rtpmap:96 opus/48000/2\n"
        "a=rtpmap:101 telephone-event/8000\n"
    )
    assert choose_codec(offer, ["G722", "PCMU", "PCMA"]) is None
    assert choose_codec(parse_offer(OFFER), []) is None


def test_choose_codec_rejects_codecs_the_bot_cannot_speak() -> None:
    with pytest.raises(SdpError, match="cannot speak"):
        choose_codec(parse_offer(OFFER), ["OPUS"])


# --- answers and offers ----------------------------------------------------------


@pytest.mark.parametrize(
    "offered, answered",
    [("sendrecv", "sendrecv"), ("sendonly", "recvonly"), ("recvonly", "sendonly"),
     ("inactive", "inactive"), ("SENDONLY", "recvonly")],
)  # fmt: skip
def test_answer_direction(offered: str, answered: str) -> None:
    assert answer_direction(offered) == answered


def test_answer_direction_rejects_unknown() -> None:
    with pytest.raises(SdpError, match="direction"):
        answer_direction("sideways")


def test_build_answer_is_complete() -> None:
    answer = build_answer("10.0.0.2", 20000, PCMU, 101, "sendrecv", session_id=42, version=1)
    assert answer == (
        b"v=0\r\n"
        b"o=voicebot 42 1 IN IP4 10.0.0.2\r\n"
        b"s=voicebot\r\n"
        b"c=IN IP4 10.0.0.2\r\n"
        b"t=0 0\r\n"
        b"m=audio 20000 RTP/AVP 0 101\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-16\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
    )


def test_build_answer_g722_without_dtmf_on_hold() -> None:
    answer = build_answer("10.0.0.2", 20000, G722, None, "sendonly", 1, 2).decode()
    assert "m=audio 20000 RTP/AVP 9\r\n" in answer
    assert "a=rtpmap:9 G722/8000\r\n" in answer
    assert "telephone-event" not in answer and "fmtp" not in answer
    assert answer.endswith("a=recvonly\r\n")


def test_answer_parses_back_as_an_offer() -> None:
    offer = parse_offer(OFFER)
    codec = choose_codec(offer, ["G722"])
    assert codec is not None
    answer = build_answer("2001:db8::2", 30000, codec, offer.dtmf_payload_type, "inactive", 7, 7)
    again = parse_offer(answer)
    assert again.connection_host == "2001:db8::2"
    assert b"IN IP6 2001:db8::2" in answer
    assert again.codecs == [(9, "G722", 8000), (101, "TELEPHONE-EVENT", 8000)]
    assert again.direction == "inactive"


@pytest.mark.parametrize(
    "args, error",
    [
        (("h", 0, PCMU, 101, "sendrecv"), "port"),
        (("h", 70000, PCMU, 101, "sendrecv"), "port"),
        (("", 4000, PCMU, 101, "sendrecv"), "host"),
        (("h", 4000, Codec("OPUS", 96, 48000, 48000), 101, "sendrecv"), "codec"),
        (("h", 4000, Codec("PCMU", 128, 8000, 8000), 101, "sendrecv"), "payload type"),
        (("h", 4000, PCMU, 0, "sendrecv"), "clashes"),
        (("h", 4000, PCMU, 101, "up"), "direction"),
    ],
)
def test_build_answer_rejects_bad_input(
    args: tuple[str, int, Codec, int | None, str], error: str
) -> None:
    host, port, codec, dtmf, direction = args
    with pytest.raises(SdpError, match=error):
        build_answer(host, port, codec, dtmf, direction, session_id=1, version=1)


def test_build_offer() -> None:
    offer = build_offer("10.0.0.2", 20000, [G722, PCMU, PCMA], session_id=5, version=6).decode()
    assert offer.startswith("v=0\r\no=voicebot 5 6 IN IP4 10.0.0.2\r\n")
    assert "m=audio 20000 RTP/AVP 9 0 8 101\r\n" in offer
    assert "a=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n" in offer
    assert "a=fmtp:101 0-16\r\n" in offer and offer.endswith("a=sendrecv\r\n")
    parsed = parse_offer(offer)
    assert choose_codec(parsed, ["PCMA"]) == PCMA
    assert parsed.dtmf_payload_type == 101


def test_build_offer_without_dtmf_and_bad_input() -> None:
    offer = build_offer("h", 4000, [PCMU], None, session_id=1, version=1)
    assert b"telephone-event" not in offer
    with pytest.raises(SdpError, match="at least one"):
        build_offer("h", 4000, [], session_id=1, version=1)
    with pytest.raises(SdpError, match="clashes"):
        build_offer("h", 4000, [PCMU], 0, session_id=1, version=1)


def test_the_codecs_the_bot_offers_in_a_call_it_places() -> None:
    assert offer_codecs(["G722", "pcmu", "PCMA"]) == [G722, PCMU, PCMA]
    with pytest.raises(SdpError, match="cannot speak"):
        offer_codecs(["G729"])


def test_the_answer_chooses_the_codec_of_a_call_the_bot_places() -> None:
    answer = parse_offer(OFFER.replace("RTP/AVP 0 8 9 101", "RTP/AVP 8 0 101").encode())
    # The answerer's order wins among the codecs the bot offered.
    assert answer_codec(answer, [G722, PCMU, PCMA]) == PCMA
    assert answer_codec(answer, [G722, PCMU]) == PCMU
    assert answer_codec(answer, [G722]) is None
