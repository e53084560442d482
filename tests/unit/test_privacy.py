"""Redaction of cards, e-mails, phones, dates of birth, addresses, postcodes and
names in caller text."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.handoff import TranscriptLine, build_handoff
from bot.privacy import KIND_PRIORITY, RedactedSpan, RedactedText, Redactor, luhn_valid
from bot.privacy_names import is_name_word
from bot.privacy_words import COMMON_WORDS, Word, training_examples
from bot.retention import LazyRedactor, scrub_handoff

PROJECT_DIR = Path(__file__).resolve().parents[2]

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


# --- names and dates of birth -------------------------------------------------

THE_CALLER = (
    "my name is margaret thatcherington and my date of birth is the third of march nineteen eighty"
)

NAME_CASES = [
    ("my name is margaret thatcherington", "my name is [name]"),
    ("name's margaret", "name's [name]"),
    ("my names margaret thatcherington", "my names [name]"),
    ("i'm called margaret", "i'm called [name]"),
    ("hi this is margaret speaking", "hi this is [name] speaking"),
    ("this is mrs thatcherington calling", "this is [name] calling"),
    ("it's margaret calling about my order", "it's [name] calling about my order"),
    ("hello margaret here", "hello [name] here"),
    ("Margaret here, my order is late", "[name] here, my order is late"),
    ("that's t h a t c h e r", "that's [name]"),
    ("spelled s m i t h", "spelled [name]"),
    ("s m i t h", "[name]"),
    ("o apostrophe n e i l l", "[name]"),
    ("my name is david p a t e l", "my name is [name]"),
    ("My name is Margaret O'Neill-Smith", "My name is [name]"),
    ("Name: Margaret Smith", "Name: [name]"),
    ("my surname is o'connor", "my surname is [name]"),
    ("my maiden name was jones", "my maiden name was [name]"),
    ("its under my husbands name mark evans", "its under my husbands name [name]"),
    ("the account is in the name of mrs linda clarke", "the account is in the name of [name]"),
    ("my name is bob van der berg", "my name is [name]"),
    # Names that are also words the intents use count after an introduction.
    ("this is will speaking", "this is [name] speaking"),
    ("it's bill here", "it's [name] here"),
    ("my name is jack black", "my name is [name]"),
]

DATE_OF_BIRTH_CASES = [
    ("date of birth the third of march nineteen eighty", "date of birth [date_of_birth]"),
    ("my date of birth is march third nineteen eighty", "my date of birth is [date_of_birth]"),
    ("dob three march eighty", "dob [date_of_birth]"),
    ("d o b oh three oh three eighty", "d o b [date_of_birth]"),
    ("date of birth zero three zero three one nine eight zero", "date of birth [date_of_birth]"),
    ("i was born on the twenty first of june", "i was born on [date_of_birth]"),
    ("born on the fourth of july in nineteen seventy six", "born on [date_of_birth]"),
    ("i was born in nineteen eighty", "i was born in [date_of_birth]"),
    ("born in march two thousand and five", "born in [date_of_birth]"),
    ("my birthday is march the third", "my birthday is [date_of_birth]"),
    ("Date of birth: 03/03/1980", "Date of birth: [date_of_birth]"),
    ("DOB 1980-03-03", "DOB [date_of_birth]"),
    ("date of birth 03-03-1980 thanks", "date of birth [date_of_birth] thanks"),
    ("d.o.b. 3.3.80", "d.o.b. [date_of_birth]"),
    ("I was born on 3rd March 1980.", "I was born on [date_of_birth]."),
    ("born March 3rd, 1980", "born [date_of_birth]"),
    ("date of birth 12/31/1999", "date of birth [date_of_birth]"),
    (
        "my date of birth on the account is wrong it's the third of march nineteen eighty",
        "my date of birth on the account is wrong it's [date_of_birth]",
    ),
]


@pytest.mark.parametrize(("text", "expected"), NAME_CASES + DATE_OF_BIRTH_CASES)
def test_names_and_dates_of_birth_are_replaced(
    redactor: Redactor, text: str, expected: str
) -> None:
    assert redactor.redact(text).text == expected


NOT_NAMES_OR_BIRTH_DATES = [
    "my name is on the account",
    "my name is spelt wrong on the parcel",
    "the name on the account is wrong",
    "what name is it under",
    "my name may be wrong on the parcel",
    "my name will be on the order",
    "Parcel here yet?",
    "the street name is spelled wrong on my order",
    "in the name of god where is my parcel",
    "is your name siri",
    "Is your name Alexa?",
    "this is about my order",
    "this is ridiculous",
    "this is the second time i've called",
    "this is outrageous calling me five times",
    "it's calling me",
    "it's the third time",
    "it's been ringing for ages",
    "it's raining here",
    "it's me calling again",
    "it's probably here somewhere",
    "hello is anyone here",
    "hi im here about my parcel",
    "i'm called back every day",
    "I'm calling about my order",
    "that's right",
    "h d m i cable",
    "d o b",
    "r m one two three four five six seven eight g b",
    # Dates without a date-of-birth cue are what the delivery intents learn from.
    "my parcel was due on the third of march",
    "the delivery date is the third of march nineteen eighty",
    "it's a birthday present for the third of march",
    "i want to change my date of birth on my account",
    "i was born in london",
    "my date of birth is the thirty first of february",
]


@pytest.mark.parametrize("text", NOT_NAMES_OR_BIRTH_DATES)
def test_ordinary_sentences_keep_their_words(redactor: Redactor, text: str) -> None:
    assert redactor.redact(text) == RedactedText(text, ())


def test_the_callers_name_and_date_of_birth_leave_the_sentence(redactor: Redactor) -> None:
    result = redactor.redact(THE_CALLER)
    assert result.text == "my name is [name] and my date of birth is [date_of_birth]"
    assert [(span.kind, THE_CALLER[span.start : span.end]) for span in result.spans] == [
        ("name", "margaret thatcherington"),
        ("date_of_birth", "the third of march nineteen eighty"),
    ]


def test_a_name_spelled_after_it_is_said_is_redacted_both_times(redactor: Redactor) -> None:
    text = "my name is margaret thatcherington that's t h a t c h e r i n g t o n"
    assert redactor.redact(text).text == "my name is [name] that's [name]"


def test_other_kinds_win_over_a_name_and_keep_their_place(redactor: Redactor) -> None:
    # Spelled letters of an e-mail are the e-mail's, not a spelled name.
    assert redactor.redact("it's k e l l y one two three at icloud dot com").text == (
        "it's [email]"
    )
    assert KIND_PRIORITY.index("name") == len(KIND_PRIORITY) - 1
    text = "call me on oh seven seven double oh nine hundred one two three my name is tom"
    assert redactor.redact(text).text == "call me on [phone] my name is [name]"


def test_a_handoff_keeps_the_name_for_agents_until_the_purge_scrubs_it() -> None:
    handoff = build_handoff(
        "c1",
        "explicit_request",
        1,
        "orders",
        [{"intent": "account_help", "confidence": 0.9}],
        [TranscriptLine(500, "caller", THE_CALLER)],
        {"complaint_text": f"caller said {THE_CALLER}"},
    ).to_dict()
    assert handoff["transcript"][0]["text"] == THE_CALLER  # what the agent on the call reads
    scrubbed = scrub_handoff(handoff, LazyRedactor())
    assert scrubbed["transcript"][0]["text"] == (
        "my name is [name] and my date of birth is [date_of_birth]"
    )
    assert scrubbed["details"]["complaint_text"] == (
        "caller said my name is [name] and my date of birth is [date_of_birth]"
    )


def test_hyphenated_typed_words_are_one_word(redactor: Redactor) -> None:
    words = redactor.words("Mary-Jane O'Neill-Smith, 1980-03-03 - ok")
    assert [word.text for word in words] == [
        "Mary-Jane",
        "O'Neill-Smith",
        ",",
        "1980-03-03",
        "-",
        "ok",
    ]
    assert words[1] == Word("O'Neill-Smith", "o'neill-smith", 10, 23)


@pytest.mark.parametrize(
    ("word", "typed", "expected"),
    [
        ("thatcherington", False, True),
        ("o'neill-smith", False, True),
        ("order", False, False),  # a word the intents use
        ("Order", True, True),  # capitalised in typed text
        ("the", True, False),  # function words never
        ("mark", False, True),  # a name that is also a word
        ("t-shirt", False, False),
        ("here", False, False),
    ],
)
def test_name_words(word: str, typed: bool, expected: bool) -> None:
    assert is_name_word(Word(word, word.lower(), 0, len(word)), typed) is expected


# The training examples that do hold a person's name after an introduction.
TRAINING_EXAMPLES_WITH_NAMES = {
    "its under my name sarah jones": "its under my name [name]",
    "my name is david patel": "my name is [name]",
    "its in the name of mrs linda clarke": "its in the name of [name]",
    "my surname is o'connor": "my surname is [name]",
    "its under my husbands name mark evans": "its under my husbands name [name]",
    "its in my name helen brooks": "its in my name [name]",
    "the account is under the name of peter grant": "the account is under the name of [name]",
    "its under the name of john taylor": "its under the name of [name]",  # held-out set
}


def test_training_examples_lose_only_the_names_they_really_hold(redactor: Redactor) -> None:
    examples = training_examples(PROJECT_DIR)
    assert len(examples) > 3000  # data/nlu and the held-out set were read
    changed = {}
    for example in examples:
        result = redactor.redact(example)
        if any(span.kind in {"name", "date_of_birth"} for span in result.spans):
            changed[example] = result.text
    assert changed == TRAINING_EXAMPLES_WITH_NAMES


def test_the_vocabulary_holds_the_intents_words_and_no_names() -> None:
    assert {"order", "parcel", "refund", "account", "delivery", "wrong"} <= COMMON_WORDS
    assert not {"sarah", "david", "patel", "o'connor", "thatcherington"} & COMMON_WORDS
