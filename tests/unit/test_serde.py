"""JSON schemas from type hints, and JSON back into typed values."""

import dataclasses
from typing import Any, Literal, NotRequired, Optional, TypedDict

import jsonschema
import pytest

from tarry.serde import (
    MAX_MESSAGE_DEPTH,
    JSONInputError,
    dumps,
    encoding_problem,
    from_json,
    loads,
    schema_for,
    to_json,
)


@dataclasses.dataclass
class Address:
    street: str
    city: str = "Berlin"


@dataclasses.dataclass
class Person:
    name: str
    age: int
    address: Address
    tags: list[str] = dataclasses.field(default_factory=list)
    nickname: str | None = None


class Order(TypedDict):
    id: str
    amount: float
    note: NotRequired[str]


@pytest.mark.parametrize(
    ("tp", "schema"),
    [
        (str, {"type": "string"}),
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (bool, {"type": "boolean"}),
        (type(None), {"type": "null"}),
        (Any, {}),
        (list[int], {"type": "array", "items": {"type": "integer"}}),
        (list, {"type": "array", "items": {}}),
        (dict[str, float], {"type": "object", "additionalProperties": {"type": "number"}}),
        (Optional[int], {"anyOf": [{"type": "integer"}, {"type": "null"}]}),  # noqa: UP045
        (str | None, {"anyOf": [{"type": "string"}, {"type": "null"}]}),
        (Literal["a", "b"], {"enum": ["a", "b"]}),
        (
            tuple[int, str],
            {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
                "minItems": 2,
                "maxItems": 2,
            },
        ),
    ],
)
def test_schema_for_plain_types(tp: Any, schema: dict[str, Any]) -> None:
    assert schema_for(tp) == schema
    jsonschema.Draft202012Validator.check_schema(schema)


def test_schema_for_a_typeddict_lists_its_required_keys() -> None:
    assert schema_for(Order) == {
        "type": "object",
        "title": "Order",
        "properties": {
            "id": {"type": "string"},
            "amount": {"type": "number"},
            "note": {"type": "string"},
        },
        "required": ["amount", "id"],
    }


def test_schema_for_a_dataclass_requires_fields_without_defaults() -> None:
    schema = schema_for(Person)
    assert schema["title"] == "Person"
    assert schema["required"] == ["name", "age", "address"]
    assert schema["properties"]["address"]["required"] == ["street"]
    assert schema["properties"]["tags"] == {"type": "array", "items": {"type": "string"}}
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"name": "Ada", "age": 36, "address": {"street": "Main"}})
    assert not validator.is_valid({"name": "Ada", "address": {"street": "Main"}})
    assert not validator.is_valid({"name": "Ada", "age": "old", "address": {"street": "x"}})


def test_schema_for_an_unknown_type_is_refused() -> None:
    class Opaque:
        pass

    with pytest.raises(TypeError, match="cannot describe"):
        schema_for(Opaque)


def test_from_json_builds_nested_dataclasses() -> None:
    person = from_json(
        {
            "name": "Ada",
            "age": 36,
            "address": {"street": "Main"},
            "tags": ["math"],
            "unknown": "ignored",
        },
        Person,
    )
    assert person == Person("Ada", 36, Address("Main"), ["math"])


def test_from_json_builds_dataclasses_inside_containers_and_optionals() -> None:
    assert from_json([{"street": "a"}], list[Address]) == [Address("a")]
    assert from_json({"home": {"street": "b"}}, dict[str, Address]) == {"home": Address("b")}
    assert from_json({"street": "c"}, Address | None) == Address("c")
    assert from_json(None, Address | None) is None


def test_from_json_leaves_plain_values_and_widens_int_to_float() -> None:
    assert from_json({"id": "1", "amount": 2.5}, Order) == {"id": "1", "amount": 2.5}
    assert from_json("x", Any) == "x"
    value = from_json(3, float)
    assert value == 3.0
    assert isinstance(value, float)


def test_from_json_refuses_a_dataclass_missing_a_required_field() -> None:
    with pytest.raises(TypeError):
        from_json({"name": "Ada"}, Person)


def test_to_json_and_back() -> None:
    person = Person("Ada", 36, Address("Main", "London"), ["x"])
    encoded = to_json(person)
    assert encoded == {
        "name": "Ada",
        "age": 36,
        "address": {"street": "Main", "city": "London"},
        "tags": ["x"],
        "nickname": None,
    }
    assert to_json((1, {2: frozenset()})) == [1, {"2": []}]
    assert from_json(loads(dumps(encoded)), Person) == person
    assert dumps({"a": "é"}) == '{"a":"é"}'.encode()


def test_from_json_widens_int_to_float_inside_an_optional() -> None:
    value = from_json(3, float | None)
    assert value == 3.0
    assert isinstance(value, float)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"NaN", "NaN is not a JSON number"),  # Python's json takes these; JSON does not
        (b"[Infinity]", "Infinity is not a JSON number"),
        (b"{\"a\": -Infinity}", "-Infinity is not a JSON number"),
        (b"1e400", "too large for a 64-bit float"),  # json.loads makes it inf
        (b"[" * 129 + b"]" * 129, "nests deeper than 128 levels"),
        (b"[" * 100_000, "nests deeper than 128 levels"),  # a RecursionError from json.loads
        (b'"\\ud800"', "lone surrogate"),  # would not encode to UTF-8 when stored
        (b'"\xff"', "not UTF-8"),
        ("\ufeff1".encode("utf-16"), "not UTF-8"),  # json.loads detects UTF-16 and reads it
        (b"9" * 5000, "more than 4300 digits"),
        (b"{nope", "Expecting property name"),
    ],
)
def test_loads_reads_client_json_strictly(data: bytes, message: str) -> None:
    with pytest.raises(JSONInputError, match=message):
        loads(data)
    assert issubclass(JSONInputError, ValueError)


def test_loads_takes_what_json_has() -> None:
    deep: Any = 1
    for _ in range(127):
        deep = [deep]
    assert loads(dumps(deep)) == deep  # 128 levels, the limit
    assert loads('"\\ud83d\\ude00"') == "\U0001f600"  # a surrogate pair is one character
    assert loads(b"1e308") == 1e308


def test_dumps_and_encoding_problem_refuse_what_json_has_not() -> None:
    with pytest.raises(ValueError):
        dumps(float("nan"))
    assert encoding_problem([1, {"a": None}]) is None
    assert encoding_problem(float("-inf")) == "NaN and Infinity are not JSON numbers"
    assert encoding_problem({"s": {1}}) == "Object of type set is not JSON serializable"
    assert encoding_problem("\ud800") is not None
    nested: Any = []
    for _ in range(200):
        nested = [nested]
    assert encoding_problem(nested) == "the JSON nests deeper than 128 levels"


def test_loads_takes_a_deeper_limit_for_protocol_messages() -> None:
    value: Any = 1
    for _ in range(127):
        value = [value]
    message = dumps({"commands": [{"kind": "set_state", "value": value}]})  # 131 levels
    with pytest.raises(JSONInputError, match="deeper than 128"):
        loads(message)
    assert loads(message, MAX_MESSAGE_DEPTH)["commands"][0]["value"] == value
