"""split_sentences: where a bot answer is cut into pieces to render and play in turn."""

from __future__ import annotations

import pytest

from bot.speech.sentences import split_sentences

CASES = {
    "short text stays whole": (
        "Hello! How can I help you today?",
        ["Hello! How can I help you today?"],
    ),
    "sentences split at full stops and question marks": (
        "Your order has shipped today. It should arrive on Friday. Is there anything else?",
        ["Your order has shipped today.", "It should arrive on Friday.", "Is there anything else?"],
    ),
    "title abbreviations do not end a sentence": (
        "Please hold the line while Mr. Smith checks your account. Dr. Jones is away this week.",
        [
            "Please hold the line while Mr. Smith checks your account.",
            "Dr. Jones is away this week.",
        ],
    ),
    "decimal numbers stay together": (
        "The fee is 4.5 percent of the amount due. The total comes to 12.75 dollars.",
        ["The fee is 4.5 percent of the amount due.", "The total comes to 12.75 dollars."],
    ),
    "ellipsis before a lower-case word continues the sentence": (
        "I was going to say... well, never mind that for now. Let us look at your account instead.",
        [
            "I was going to say... well, never mind that for now.",
            "Let us look at your account instead.",
        ],
    ),
    "ellipsis before a capital ends the sentence": (
        "Let me look that up for you right now... Yes, I found your order from last Tuesday.",
        ["Let me look that up for you right now...", "Yes, I found your order from last Tuesday."],
    ),
    "exclamation and mixed marks end sentences": (
        "That is wonderful news for you today! Really?! I will update your account straight away.",
        [
            "That is wonderful news for you today!",
            "Really?! I will update your account straight away.",
        ],
    ),
    "closing quotes stay with their sentence": (
        'The message said "payment received." Then the line went quiet for a while.',
        ['The message said "payment received."', "Then the line went quiet for a while."],
    ),
    "no. before a number is an abbreviation": (
        "Your ticket is No. 42 in the queue right now. An agent will be with you shortly.",
        ["Your ticket is No. 42 in the queue right now.", "An agent will be with you shortly."],
    ),
    "no. before a capital is the word no": (
        "The answer to that question is no. Please call again tomorrow morning after nine.",
        ["The answer to that question is no.", "Please call again tomorrow morning after nine."],
    ),
    "initials do not end a sentence": (
        "Your agent today is J. R. Smith from the billing team. He will explain the charges.",
        ["Your agent today is J. R. Smith from the billing team.", "He will explain the charges."],
    ),
    "e.g. and i.e. do not end a sentence": (
        "You can pay by card, e.g. Visa or Mastercard, or by bank transfer. Cash is not accepted.",
        [
            "You can pay by card, e.g. Visa or Mastercard, or by bank transfer.",
            "Cash is not accepted.",
        ],
    ),
    "lines and list markers": (
        "Please choose one option:\n1. Pay a bill now.\n2. Talk to an agent.\n3. Hear this again.",
        [
            "Please choose one option:",
            "1. Pay a bill now.",
            "2. Talk to an agent.",
            "3. Hear this again.",
        ],
    ),
    "a short first sentence joins the next": (
        "Sure. Your order number 4521 has shipped and it should arrive on Friday the fifth.",
        ["Sure. Your order number 4521 has shipped and it should arrive on Friday the fifth."],
    ),
    "a short last sentence joins the one before": (
        "Your refund of twenty dollars was sent to your card this morning. Bye.",
        ["Your refund of twenty dollars was sent to your card this morning. Bye."],
    ),
    "whitespace is collapsed": (
        "  Your   order\thas shipped   today.    It should arrive\n\non Friday afternoon.  ",
        ["Your order has shipped today.", "It should arrive", "on Friday afternoon."],
    ),
    "bare punctuation joins the sentence before": (
        "Your payment was received this morning. ... The balance on your account is now zero.",
        ["Your payment was received this morning. ...", "The balance on your account is now zero."],
    ),
    "versions and times with inner dots stay together": (
        "Version 2.1.3 of the app fixes the login problem. Please update it at 9.30 tonight.",
        ["Version 2.1.3 of the app fixes the login problem.", "Please update it at 9.30 tonight."],
    ),
}


@pytest.mark.parametrize(("text", "expected"), CASES.values(), ids=list(CASES))
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t"])
def test_nothing_to_say_gives_no_pieces(text: str) -> None:
    assert split_sentences(text) == []


def test_long_sentence_is_cut_at_clauses_within_the_limit() -> None:
    text = (
        "Your contract renews on the first of March, the monthly price goes up by two dollars, "
        "the data allowance doubles to forty gigabytes, and you can cancel at any time before "
        "then without a fee, as long as you tell us in writing at least two weeks ahead"
    )
    pieces = split_sentences(text, max_piece_chars=100)
    assert len(pieces) >= 2
    assert all(len(piece) <= 100 for piece in pieces)
    assert all(piece.endswith(",") for piece in pieces[:-1])
    assert " ".join(pieces) == text


def test_long_run_without_punctuation_is_cut_between_words() -> None:
    text = " ".join(["word"] * 60)
    pieces = split_sentences(text, max_piece_chars=50)
    assert all(0 < len(piece) <= 50 for piece in pieces)
    assert " ".join(pieces) == text


def test_pieces_rejoin_to_the_normalised_text() -> None:
    text = "Mr. Lee, your 3.5 GB plan... renews soon! Call us? We open at 9. Bye now, take care."
    pieces = split_sentences(text, short_text_chars=0)
    assert " ".join(pieces) == text
    assert all(piece and any(char.isalnum() for char in piece) for piece in pieces)


def test_short_text_limit_is_a_parameter() -> None:
    text = "Hello there. How are you doing today?"
    assert split_sentences(text) == [text]
    assert split_sentences(text, short_text_chars=10) == [
        "Hello there.",
        "How are you doing today?",
    ]


def test_list_markers_stay_with_their_item_even_without_merging() -> None:
    text = "1. Pay a bill now.\n2. Talk to an agent about your account."
    pieces = split_sentences(text, short_text_chars=0, min_piece_chars=0)
    assert pieces == ["1. Pay a bill now.", "2. Talk to an agent about your account."]


def test_question_mark_ends_a_sentence_before_a_lower_case_word() -> None:
    text = "Can I help with anything else today? just say yes or no, whichever is true."
    assert split_sentences(text) == [
        "Can I help with anything else today?",
        "just say yes or no, whichever is true.",
    ]
