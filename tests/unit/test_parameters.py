"""taskmesh.parameters: schema checks (no remote references), validation errors naming the JSON
path, merging, bounds, and Struct numbers."""

import pytest

from taskmesh import parameters
from taskmesh.service_errors import InvalidArgument

SCHEMA = {
    "type": "object",
    "properties": {
        "customer_id": {"type": "integer"},
        "items": {"type": "array", "items": {"$ref": "#/$defs/item"}},
    },
    "required": ["customer_id"],
    "$defs": {"item": {"type": "object", "properties": {"sku": {"type": "string"}}}},
}


def test_errors_name_the_json_path() -> None:
    validator = parameters.check_schema(SCHEMA)
    with pytest.raises(InvalidArgument, match=r"^parameters.customer_id: 'x' is not of type 'integer'$"):
        parameters.validate(validator, {"customer_id": "x"})
    with pytest.raises(InvalidArgument, match=r"^parameters: 'customer_id' is a required property$"):
        parameters.validate(validator, {})
    with pytest.raises(InvalidArgument, match=r"^requests\[3\].parameters.items\[1\].sku: 5 is not of type"):
        parameters.validate(
            validator, {"customer_id": 1, "items": [{"sku": "a"}, {"sku": 5}]}, "requests[3].parameters"
        )
    parameters.validate(validator, {"customer_id": 1, "items": [{"sku": "a"}]})


def test_a_struct_number_that_is_integral_is_an_integer() -> None:
    struct = parameters.to_struct({"customer_id": 42, "ratio": 0.5, "nested": [{"n": 3}]})
    values = parameters.from_struct(struct)
    assert values == {"customer_id": 42, "ratio": 0.5, "nested": [{"n": 3}]}
    assert isinstance(values["customer_id"], int)
    parameters.validate(parameters.check_schema(SCHEMA), values)


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "nope"}, r"^job.parameter_schema.type: 'nope' is not valid"),
        ({"$ref": "https://evil.example/schema.json"}, r"^job.parameter_schema.\$ref: .*only references inside"),
        ({"properties": {"a": {"$ref": "other.json#/x"}}}, r"^job.parameter_schema.properties.a.\$ref"),
        ({"allOf": [{"$dynamicRef": "http://x/y"}]}, r"^job.parameter_schema.allOf\[0\].\$dynamicRef"),
    ],
)
def test_schemas_are_checked_and_may_not_point_outside_themselves(schema: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parameters.check_schema(schema)


def test_a_schema_whose_base_is_remote_fetches_nothing() -> None:
    validator = parameters.check_schema(
        {"$id": "https://evil.example/s.json", "$ref": "#/$defs/x", "$defs": {"x": {"type": "integer"}}}
    )
    with pytest.raises(InvalidArgument, match="is not of type 'integer'"):
        parameters.validate(validator, "x")  # type: ignore[arg-type]


def test_merge_is_key_by_key_at_the_top_level() -> None:
    assert parameters.merged({"a": 1, "b": {"x": 1}}, {"b": {"y": 2}, "c": 3}) == {"a": 1, "b": {"y": 2}, "c": 3}
    assert parameters.merged(None, None) == {}


def test_parameters_are_bounded_in_size_and_depth() -> None:
    parameters.bounded({"a": "x" * 1000}, "parameters")
    with pytest.raises(InvalidArgument, match=r"^parameters: must be at most 65536 bytes of JSON"):
        parameters.bounded({"a": "x" * 70_000}, "parameters")
    deep: dict = {}
    inner = deep
    for _ in range(40):
        inner["a"] = {}
        inner = inner["a"]
    with pytest.raises(InvalidArgument, match="levels deep"):
        parameters.bounded(deep, "parameters")
    with pytest.raises(InvalidArgument, match="no JSON"):
        parameters.bounded({"a": float("nan")}, "parameters")
