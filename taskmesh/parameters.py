"""Run parameters: pure checks and conversions (no I/O).

- A job's parameter_schema is a JSON Schema checked with `jsonschema` (check_schema) when the
  job is written. "$ref" (and "$dynamicRef"/"$recursiveRef") may only point inside the schema
  ("#..."): nothing is ever fetched, and the validator's registry cannot retrieve anything.
- A run's parameters are the job's defaults with the trigger's merged over them, key by key at
  the top level; they are bounded (MAX_PARAMETERS_BYTES of compact JSON, MAX_PARAMETERS_DEPTH
  levels) and must satisfy the schema. Errors name the JSON path:
  "parameters.customer_id: 'x' is not of type 'integer'".
- google.protobuf.Struct holds every number as a double: from_struct turns integral numbers
  back into ints (so 42 stays 42 in a template, and validates as an "integer").
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema
from google.protobuf import json_format, struct_pb2
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.protocols import Validator
from referencing import Registry
from referencing.exceptions import NoSuchResource

from taskmesh.limits import MAX_PARAMETERS_BYTES, MAX_PARAMETERS_DEPTH
from taskmesh.service_errors import InvalidArgument

Json = dict[str, Any]
MAX_SCHEMA_BYTES = 64 * 1024
_REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")
_INTEGRAL_LIMIT = 2**53


def from_struct(struct: struct_pb2.Struct) -> Json:
    """A Struct as plain JSON, integral numbers as ints."""
    return _integral(json_format.MessageToDict(struct))  # type: ignore[no-any-return]


def from_value(value: struct_pb2.Value) -> Any:
    return _integral(json_format.MessageToDict(value))


def _integral(value: Any) -> Any:
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < _INTEGRAL_LIMIT else value
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def to_struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


def dumps(value: Any) -> str:
    """Compact JSON, as parameters and outputs are measured and stored."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def bounded(value: Json, field: str, max_bytes: int = MAX_PARAMETERS_BYTES) -> str:
    """`value` as compact JSON, after checking its size and depth (InvalidArgument otherwise)."""
    text, problem = measured(value, max_bytes)
    if problem is not None:
        raise InvalidArgument(field, problem)
    return text


def measured(value: Any, max_bytes: int, max_depth: int = MAX_PARAMETERS_DEPTH) -> tuple[str, str | None]:
    """(compact JSON of `value`, None) or ("", what is wrong: too deep, too large, no JSON)."""
    if not _shallow(value, max_depth):
        return "", f"must be at most {max_depth} levels deep"
    try:
        text = dumps(value)
    except (TypeError, ValueError) as error:  # NaN, Infinity, no JSON type
        return "", f"is no JSON: {error}"
    if len(text) > max_bytes // 4 and len(text.encode()) > max_bytes:
        return "", f"must be at most {max_bytes} bytes of JSON, not {len(text.encode())}"
    return text, None


def _shallow(value: Any, max_depth: int) -> bool:
    level: list[Any] = [value]
    for _ in range(max_depth + 1):
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return True
    return False


def merged(defaults: Json | None, given: Json | None) -> Json:
    return {**(defaults or {}), **(given or {})}


def check_schema(schema: Json, field: str = "job.parameter_schema") -> Validator:
    """The compiled validator of a schema that is valid and refers only to itself."""
    if len(dumps(schema).encode()) > MAX_SCHEMA_BYTES:
        raise InvalidArgument(field, f"must be at most {MAX_SCHEMA_BYTES} bytes of JSON")
    for path, ref in _refs(schema, ""):
        if not ref.startswith("#"):
            raise InvalidArgument(
                f"{field}{path}", f"{ref!r}: only references inside the schema ('#...') are allowed"
            )
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as error:
        raise InvalidArgument(f"{field}{_path(error.absolute_path)}", error.message) from None
    return cls(schema, registry=_NO_RETRIEVAL, format_checker=cls.FORMAT_CHECKER)


def _refs(value: Any, path: str) -> Iterable[tuple[str, str]]:
    if isinstance(value, dict):
        for key, child in value.items():
            if key in _REF_KEYWORDS and isinstance(child, str):
                yield f"{path}.{key}", child
            else:
                yield from _refs(child, f"{path}.{key}")
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _refs(child, f"{path}[{index}]")


def _refuse(uri: str) -> Any:
    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # an attrs class mypy cannot see through


_NO_RETRIEVAL: Registry[Any] = Registry(retrieve=_refuse)  # type: ignore[call-arg]  # (attrs, as above)


def validate(validator: Validator | None, parameters: Json, field: str = "parameters") -> None:
    """InvalidArgument naming the JSON path of the most relevant error, if any."""
    if validator is None:
        return
    error = jsonschema.exceptions.best_match(validator.iter_errors(parameters))
    if error is not None:
        raise InvalidArgument(f"{field}{_path(error.absolute_path)}", _message(error))


def _message(error: ValidationError) -> str:
    message = error.message
    return message if len(message) <= 500 else message[:500] + "..."


def _path(parts: Iterable[Any]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)
