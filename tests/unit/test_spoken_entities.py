"""Spoken order ids, phone numbers and e-mail addresses, and the Rasa wrapper."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bot.nlu.number_words import words_to_digits
from bot.nlu.spoken import VALUE_EXTENSION, SpokenEntity, SpokenEntityNormaliser

if TYPE_CHECKING:  # Rasa pulls in TensorFlow; import it only in the tests that need it.
    from bot.nlu.component import SpokenEntityExtractor


@pytest.fixture(scope="module")
def normaliser() -> SpokenEntityNormaliser:
    return SpokenEntityNormaliser()


def found(normaliser: SpokenEntityNormaliser, text: str) -> list[tuple[str, str]]:
    return [(entity.entity, entity.value) for entity in normaliser.extract(text)]


ORDER_CASES = [
    ("order four five six seven eight", "45678"),
    ("twelve thirty four five", "12345"),
    ("one two three double four", "12344"),
    ("triple seven eight nine", "77789"),
    ("oh one two three four", "01234"),
    ("zero one two three four", "01234"),
    ("nought nought one two three", "00123"),
    ("one hundred and twenty three forty five", "12345"),
    ("one hundred twenty three forty five", "12345"),
    ("twelve thousand three hundred and forty five", "12345"),
    ("12345", "12345"),
    ("123 45", "12345"),
    ("123 four five", "12345"),
    ("one two um three four five", "12345"),
    ("one two three uh four five six", "123456"),
    ("my order number is nine eight seven six five four", "987654"),
    ("the reference is double oh seven one two", "00712"),
    ("can you check order one two three four five six seven eight nine please", "123456789"),
    ("it's seventy seven double eight ninety", "778890"),
    ("tracking number twenty twenty four one", "20241"),
    ("order o one two three four", "01234"),
    ("ORDER Four Five Six Seven Eight", "45678"),
]

PHONE_CASES = [
    ("oh seven seven double nine one two three four five six", "07799123456"),
    ("plus four four seven seven double oh nine hundred one two three", "+447700900123"),
    ("my mobile is oh seven seven double nine one two three four five six", "07799123456"),
    ("call me on oh two oh seven nine four six one two three four", "02079461234"),
    ("you can reach me on seven seven double nine one two three four five six", "7799123456"),
    ("my phone number is five five five one two three four five six seven", "5551234567"),
    ("oh eight hundred one two three four five six", "0800123456"),
    ("it's oh one six one um four nine six double oh one two", "01614960012"),
    ("07799 123456", "07799123456"),
    ("+447700900123", "+447700900123"),
    ("plus three five three eight seven one two three four five six seven", "+353871234567"),
    ("my number is oh seven seven double nine one two three four five six", "07799123456"),
]

EMAIL_CASES = [
    ("jane dot doe at example dot com", "jane.doe@example.com"),
    ("j o h n underscore smith at gmail dot com", "john_smith@gmail.com"),
    ("john smith at example dot co dot uk", "johnsmith@example.co.uk"),
    ("mary ninety nine at example dot org", "mary99@example.org"),
    ("my email is jane dot doe at example dot com", "jane.doe@example.com"),
    ("it's bob dash jones at shop dash online dot net thanks", "bob-jones@shop-online.net"),
    ("sam hyphen lee at acme hyphen corp dot io", "sam-lee@acme-corp.io"),
    ("um my email address is a n n a at hot mail dot com", "anna@hotmail.com"),
    ("j o double n at example dot com", "jonn@example.com"),
    ("send it to peter period parker at example period com", "peter.parker@example.com"),
    ("kim one two three at example dot com", "kim123@example.com"),
    ("contact me at tom at example dot com", "tom@example.com"),
    ("its jo at example dot com dot", "jo@example.com"),
    ("the address is dot ann at example dot com", "ann@example.com"),
    ("jane.doe@example.com", "jane.doe@example.com"),
]

NEGATIVE_CASES = [
    "i have two items",
    "one of them is broken",
    "i waited three days",
    "it cost twenty pounds",
    "in twenty twenty four",
    "i called at five",
    "look at the website",
    "one two three",
    "a hundred times",
    "at home dot",
    "hello i would like to speak to someone",
    "it cost forty nine ninety nine",
    "it costs one hundred and forty nine ninety nine",
    "i paid one hundred and twenty three forty five",
    "one two three four five pounds",
    "my phone number is one two three four five",
    "call me on one two three four five six",
    "one two three four five six seven eight nine ten eleven twelve thirteen",
    "the parcel came at nine thirty",
    "nineteen ninety nine",
    "i ordered two and then three more",
    "jane at example dot nonsense",
    "meet me at the shop dot",
    "double the price",
    "oh no",
    "oh oh oh oh oh",
    "",
]


@pytest.mark.parametrize(("text", "value"), ORDER_CASES)
def test_order_id(normaliser: SpokenEntityNormaliser, text: str, value: str) -> None:
    assert found(normaliser, text) == [("order_id", value)]


@pytest.mark.parametrize(("text", "value"), PHONE_CASES)
def test_phone_number(normaliser: SpokenEntityNormaliser, text: str, value: str) -> None:
    assert found(normaliser, text) == [("phone_number", value)]


@pytest.mark.parametrize(("text", "value"), EMAIL_CASES)
def test_email(normaliser: SpokenEntityNormaliser, text: str, value: str) -> None:
    assert found(normaliser, text) == [("email", value)]


@pytest.mark.parametrize("text", NEGATIVE_CASES)
def test_no_entity(normaliser: SpokenEntityNormaliser, text: str) -> None:
    assert found(normaliser, text) == []


@pytest.mark.parametrize(
    ("words", "digits"),
    [
        ("one two three", "123"),
        ("double oh seven", "007"),
        ("triple nine", "999"),
        ("twenty three", "23"),
        ("twenty oh five", "2005"),
        ("nine hundred", "900"),
        ("nine hundred one", "9001"),
        ("one hundred and five", "105"),
        ("one hundred twelve", "112"),
        ("a hundred", "100"),
        ("five thousand", "5000"),
        ("two thousand and one", "2001"),
        ("twelve thousand three hundred and forty five", "12345"),
        ("nineteen hundred", "1900"),
        ("one um two", "12"),
        ("double", None),
        ("one and two", None),
        ("hello", None),
    ],
)
def test_words_to_digits(words: str, digits: str | None) -> None:
    assert words_to_digits(words.split()) == digits


def test_offsets_point_into_original_text(normaliser: SpokenEntityNormaliser) -> None:
    text = "hi my order is  one two three four five and email jo dot x at example dot com ok"
    entities = normaliser.extract(text)
    assert entities == [
        SpokenEntity("order_id", "12345", 16, 39, "one two three four five"),
        SpokenEntity("email", "jo.x@example.com", 50, 77, "jo dot x at example dot com"),
    ]
    for entity in entities:
        assert text[entity.start : entity.end] == entity.text


def test_order_and_phone_in_one_utterance(normaliser: SpokenEntityNormaliser) -> None:
    text = (
        "order number one two three four five and my mobile is "
        "oh seven seven double nine one two three four five six"
    )
    assert found(normaliser, text) == [
        ("order_id", "12345"),
        ("phone_number", "07799123456"),
    ]


def test_digits_inside_email_are_not_an_order(normaliser: SpokenEntityNormaliser) -> None:
    assert found(normaliser, "one two three four five at example dot com") == [
        ("email", "12345@example.com")
    ]


def test_spacy_doc_carries_labels_and_values(normaliser: SpokenEntityNormaliser) -> None:
    doc = normaliser.nlp("order one two three four five or jo at example dot ie")
    assert [(ent.label_, ent._.get(VALUE_EXTENSION)) for ent in doc.ents] == [
        ("ORDER_ID", "12345"),
        ("EMAIL", "jo@example.ie"),
    ]


def _extractor(tmp_path: Path) -> SpokenEntityExtractor:
    from rasa.engine.graph import ExecutionContext, GraphSchema
    from rasa.engine.storage.local_model_storage import LocalModelStorage
    from rasa.engine.storage.resource import Resource

    from bot.nlu.component import SpokenEntityExtractor

    return SpokenEntityExtractor.create(
        SpokenEntityExtractor.get_default_config(),
        LocalModelStorage(tmp_path),
        Resource("spoken_entity_extractor"),
        ExecutionContext(GraphSchema({}), "test-model"),
    )


def test_rasa_component_process_adds_entities(tmp_path: Path) -> None:
    from rasa.shared.nlu.constants import ENTITIES, TEXT
    from rasa.shared.nlu.training_data.message import Message

    existing = {"entity": "product", "value": "kettle", "start": 0, "end": 6}
    with_entity = Message(data={TEXT: "kettle order one two three four five"})
    with_entity.set(ENTITIES, [dict(existing)])
    email = Message(data={TEXT: "my email is jane dot doe at example dot com"})
    nothing = Message(data={TEXT: "i waited three days"})

    extractor = _extractor(tmp_path)
    processed = extractor.process([with_entity, email, nothing])

    assert processed[0].get(ENTITIES) == [
        existing,
        {
            "entity": "order_id",
            "value": "12345",
            "start": 13,
            "end": 36,
            "confidence_entity": 1.0,
            "extractor": "SpokenEntityExtractor",
        },
    ]
    assert processed[1].get(ENTITIES) == [
        {
            "entity": "email",
            "value": "jane.doe@example.com",
            "start": 12,
            "end": 43,
            "confidence_entity": 1.0,
            "extractor": "SpokenEntityExtractor",
        }
    ]
    assert processed[2].get(ENTITIES) == []
    assert ENTITIES in processed[1].as_dict(only_output_properties=True)


def test_rasa_component_leaves_training_data_unchanged(tmp_path: Path) -> None:
    from rasa.shared.nlu.training_data.message import Message
    from rasa.shared.nlu.training_data.training_data import TrainingData

    training_data = TrainingData([Message(data={"text": "order one two three four five"})])
    assert _extractor(tmp_path).process_training_data(training_data) is training_data


def test_rasa_recipe_places_component_after_tokenizer() -> None:
    from rasa.engine.recipes.default_recipe import DefaultV1Recipe
    from rasa.shared.data import TrainingType

    from bot.nlu.component import SpokenEntityExtractor

    config = {
        "recipe": "default.v1",
        "language": "en",
        "pipeline": [
            {"name": "WhitespaceTokenizer"},
            {"name": "bot.nlu.component.SpokenEntityExtractor"},
        ],
    }
    graph = DefaultV1Recipe().graph_config_for_recipe(config, {}, TrainingType.NLU)
    nodes = graph.predict_schema.nodes
    name = next(key for key in nodes if "SpokenEntityExtractor" in key)
    assert nodes[name].uses is SpokenEntityExtractor
    assert nodes[name].fn == "process"
    assert "WhitespaceTokenizer" in nodes[name].needs["messages"]


def test_rasa_component_masks_entity_words_in_tokens() -> None:
    from rasa.nlu.constants import TOKENS_NAMES
    from rasa.nlu.tokenizers.whitespace_tokenizer import WhitespaceTokenizer
    from rasa.shared.nlu.constants import TEXT
    from rasa.shared.nlu.training_data.message import Message
    from rasa.shared.nlu.training_data.training_data import TrainingData

    from bot.nlu.component import SpokenEntityExtractor

    tokenizer = WhitespaceTokenizer(WhitespaceTokenizer.get_default_config())
    extractor = SpokenEntityExtractor({})
    live = Message(data={TEXT: "where is my order one two three four five please"})
    example = Message(
        data={TEXT: "cancel order three four five six seven", "intent": "cancel_order"}
    )
    plain = Message(data={TEXT: "i have two items", "intent": "inform"})
    tokenizer.process([live])
    tokenizer.process_training_data(TrainingData([example, plain]))
    extractor.process([live])
    extractor.process_training_data(TrainingData([example, plain]))

    def words(message: Message) -> list[str]:
        return [t.text for t in message.get(TOKENS_NAMES[TEXT])]

    assert words(live) == ["where", "is", "my", "order", "__order_id__", "please"]
    assert words(example) == ["cancel", "order", "__order_id__"]
    assert words(plain) == ["i", "have", "two", "items"]
    masked = live.get(TOKENS_NAMES[TEXT])[4]
    assert (masked.start, masked.end) == (18, 41)
    assert not example.get("entities")


def test_digit_aliases_are_learnt_from_corrections_with_one_word_per_digit() -> None:
    from bot.nlu.spoken import learn_digit_aliases

    learnt = learn_digit_aliases(
        [
            ("won two three for five", "12345"),
            ("ate ate to one", "8821"),
            ("the number one two", "12"),  # words and digits do not line up
            ("sicks", "7"),
            ("sicks", "6"),  # two meanings: neither is kept
        ]
    )
    assert learnt == {"won": "one", "for": "four", "ate": "eight", "to": "two"}


def test_a_digit_alias_counts_only_beside_number_words() -> None:
    from bot.nlu.spoken import SpokenEntityNormaliser

    normaliser = SpokenEntityNormaliser({"won": "one", "for": "four", "to": "two"})
    found = normaliser.extract("my order is won two three for five")
    assert [(e.entity, e.value, e.text) for e in found] == [
        ("order_id", "12345", "won two three for five")
    ]
    assert normaliser.extract("i have been waiting for a reply to my email") == []
    # An alias beside another alias that is beside a number word: "won to three".
    assert [e.value for e in normaliser.extract("order won to three four five")] == ["12345"]
    # A learnt alias that is not one of the built-in mishearings.
    learnt = SpokenEntityNormaliser({"free": "three"})
    assert [e.value for e in learnt.extract("order one two free four five")] == ["12345"]
    assert SpokenEntityNormaliser().extract("order one two free four five") == []


MISHEARD_CASES = [
    ("my order is won two three for five", "12345"),
    ("one two three for five", "12345"),
    ("three to four five six", "32456"),
    ("its four five six seven ate", "45678"),
    ("seven ate nine oh one", "78901"),
    ("one two three four five too", "12345"),  # "too" at the edge stays a word
]


@pytest.mark.parametrize(("text", "value"), MISHEARD_CASES)
def test_common_digit_mishearings_inside_number_runs(text: str, value: str) -> None:
    from bot.nlu.spoken import SpokenEntityNormaliser

    assert [(e.entity, e.value) for e in SpokenEntityNormaliser().extract(text)] == [
        ("order_id", value)
    ]


def test_mishearings_outside_number_runs_stay_words() -> None:
    from bot.nlu.spoken import SpokenEntityNormaliser

    normaliser = SpokenEntityNormaliser()
    found = normaliser.extract("can you check one two three four five for me")
    assert [(e.entity, e.value, e.text) for e in found] == [
        ("order_id", "12345", "one two three four five")
    ]
    assert normaliser.extract("i want to talk to someone for five minutes") == []
    assert normaliser.extract("i won two tickets") == []
    assert normaliser.extract("the order came two to three days late") == []
    assert normaliser.extract("split into two for three deliveries") == []


WRONG_SHAPE_CASES = [
    # After an order cue, a dictated number of any length is the order number.
    ("cancel my order it is one two three four five six seven eight", "order_id", "12345678"),
    ("order one two three four five six seven eight nine zero", "order_id", "1234567890"),
    ("my order number is one two three", "order_id", "123"),
    # Without one, a dictated reference is kept as a number to read back.
    ("one one two two three three four four", "order_id", "11223344"),
    ("its one one two two three three four four five five", "number", "1122334455"),
    ("the reference is um four four one two", "order_id", "4412"),
    ("it says four four um one two", "number", "4412"),
]


@pytest.mark.parametrize(("text", "entity", "value"), WRONG_SHAPE_CASES)
def test_numbers_of_other_shapes_are_kept(text: str, entity: str, value: str) -> None:
    from bot.nlu.spoken import SpokenEntityNormaliser

    found = SpokenEntityNormaliser().extract(text)
    assert [(e.entity, e.value) for e in found] == [(entity, value)]
