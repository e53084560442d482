"""Redaction of cards, e-mails, phones, addresses and postcodes in caller text."""

from __future__ import annotations

import pytest

from bot.privacy import RedactedSpan, RedactedText, Redactor, luhn_valid

DIGIT_NAMES = "zero one two three four five six seven eight nine".split()


def spoken(digits: str) -> str:
    """Digits dictated one by one, as a recogniser writes them."""
    return " ".join(DIGIT_NAMES[int(char)] for char in digits)


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


VALID_CARDS = [
    "4111111111111111",
    "5555555555554444",
    "378282246310005",
    "6011111111111117",
    "4012888888881881",
    "4222222222222",
    "3530111333300000",
]
INVALID_CARDS = [
    "4111111111111112",
    "5555555555554445",
    "378282246310006",
    "1234567812345678",
]


@pytest.mark.parametrize("digits", VALID_CARDS)
def test_luhn_accepts_valid_card_numbers(digits: str) -> None:
    assert luhn_valid(digits)


@pytest.mark.parametrize("digits", [*INVALID_CARDS, "", "41111a"])
def test_luhn_rejects_invalid_card_numbers(digits: str) -> None:
    assert not luhn_valid(digits)


@pytest.mark.parametrize("digits", VALID_CARDS)
def test_spoken_valid_card_is_redacted(redactor: Redactor, digits: str) -> None:
    assert redactor.redact(f"my card {spoken(digits)} was declined").text == (
        "my card [card] was declined"
    )


@pytest.mark.parametrize("digits", INVALID_CARDS)
def test_card_numbers_failing_luhn_are_kept(redactor: Redactor, digits: str) -> None:
    for text in (f"my card {spoken(digits)} was declined", f"my card {digits} was declined"):
        result = redactor.redact(text)
        assert result == RedactedText(text, ())


REDACTED_CASES = [
    # cards, typed and spoken in groups
    ("my card 4111 1111 1111 1111 was declined", "my card [card] was declined"),
    ("card number 4111-1111-1111-1111 please", "card number [card] please"),
    ("5555555555554444", "[card]"),
    ("3782 822463 10005 is my amex", "[card] is my amex"),
    ("forty one eleven double one eleven eleven eleven eleven eleven", "[card]"),
    ("four one one one um one one one one one one one one one one one one", "[card]"),
    # e-mails
    ("my email is jane.doe@example.com.", "my email is [email]."),
    ("jane dot doe at example dot com", "[email]"),
    ("it's john underscore smith ninety nine at gmail dot co dot uk thanks", "it's [email] thanks"),
    ("Send it to J.Doe@Example.org", "Send it to [email]"),
    # phones
    ("call me on oh seven seven double oh nine hundred one two three", "call me on [phone]"),
    ("plus four four seven seven double oh nine hundred one two three", "[phone]"),
    ("my number is +44 7700 900123", "my number is [phone]"),
    ("07700 900123", "[phone]"),
    ("07700-900-123 is my mobile", "[phone] is my mobile"),
    ("ring (020) 7946 0958 after six", "ring [phone] after six"),
    # addresses and postcodes
    ("i live at 12 baker street", "i live at [address]"),
    ("i live at twenty two acacia avenue", "i live at [address]"),
    ("one hundred and five high street", "[address]"),
    ("deliver to 42 high st. please", "deliver to [address]. please"),
    ("22a baker st, london sw1a 1aa", "[address]"),
    ("i live at twenty two acacia avenue n one two a b", "i live at [address]"),
    ("my address is 7 st johns wood road", "my address is [address]"),
    ("flat 3 10 downing street", "flat [address]"),
    ("it's 9 elm grove", "it's [address]"),
    ("forty seven upper richmond road", "[address]"),
    ("my postcode is sw1a 1aa", "my postcode is [postcode]"),
    ("postcode n one two a b", "postcode [postcode]"),
    ("postcode o x four one a b", "postcode [postcode]"),
    ("it's e fourteen five g h", "it's [postcode]"),
    ("POSTCODE SW1A1AA", "POSTCODE [postcode]"),
]


@pytest.mark.parametrize(("text", "expected"), REDACTED_CASES)
def test_personal_data_is_replaced_by_a_typed_placeholder(
    redactor: Redactor, text: str, expected: str
) -> None:
    assert redactor.redact(text).text == expected


UNCHANGED_CASES = [
    "i want to return two items",
    "it cost forty nine pounds",
    "i live near the high street",
    "order one two three four five",
    "my order number is nine eight seven six five four three two one",
    "order 12345678 has not arrived",
    "it was a two hour drive",
    "a five minute walk down the road",
    "i ordered three new road bikes",
    "two items on the street",
    "it took three days either way",
    "i paid twenty pounds on the fourth",
    "my card was declined",
    "i'll be at home after five",
    "the parcel is at the depot",
    "i have a b12 voucher",
    "four one one one",
    "",
]


@pytest.mark.parametrize("text", UNCHANGED_CASES)
def test_ordinary_sentences_and_order_numbers_are_kept(redactor: Redactor, text: str) -> None:
    assert redactor.redact(text) == RedactedText(text, ())


def test_several_items_in_one_sentence_keep_their_own_kinds(redactor: Redactor) -> None:
    text = (
        "order one two three four five card 5555 5555 5555 4444 "
        "email jane at example dot com phone 07700 900123 home 12 baker street sw1a 1aa"
    )
    result = redactor.redact(text)
    assert result.text == (
        "order one two three four five card [card] email [email] phone [phone] home [address]"
    )
    assert [span.kind for span in result.spans] == ["card", "email", "phone", "address"]


def test_offsets_point_at_the_original_text(redactor: Redactor) -> None:
    phone = "oh seven seven double oh nine hundred one two three"
    email = "jane.doe@example.com"
    text = f"call me on {phone} or email {email}"
    result = redactor.redact(text)
    assert result.spans == (
        RedactedSpan("phone", text.index(phone), text.index(phone) + len(phone)),
        RedactedSpan("email", text.index(email), text.index(email) + len(email)),
    )
    assert [text[span.start : span.end] for span in result.spans] == [phone, email]


def test_offsets_cover_address_with_postcode_and_postcode_alone(redactor: Redactor) -> None:
    text = "send it to 22a baker st, london sw1a 1aa or my work in nw8 9ab"
    result = redactor.redact(text)
    assert [(span.kind, text[span.start : span.end]) for span in result.spans] == [
        ("address", "22a baker st, london sw1a 1aa"),
        ("postcode", "nw8 9ab"),
    ]
    assert result.text == "send it to [address] or my work in [postcode]"


def test_extra_whitespace_does_not_shift_offsets(redactor: Redactor) -> None:
    text = "  card   4111 1111 1111 1111  ok"
    result = redactor.redact(text)
    assert result.spans == (RedactedSpan("card", 9, 28),)
    assert result.text == "  card   [card]  ok"


def test_a_card_wins_over_a_phone_reading_of_the_same_digits(redactor: Redactor) -> None:
    # 13 digits with a leading zero could be a phone; passing Luhn makes it a card.
    digits = next(
        f"0{body}"
        for body in (f"{n:012d}" for n in range(411111111111, 411111111200))
        if luhn_valid(f"0{body}")
    )
    assert redactor.redact(f"card {digits}").text == "card [card]"
    assert redactor.redact(f"mobile {digits[:-1]}").text == "mobile [phone]"
