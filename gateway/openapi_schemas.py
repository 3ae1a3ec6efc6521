"""OpenAPI 3.0 schemas for protobuf messages as the gateway prints and parses them (proto3 JSON).

Field names are JSON names (lowerCamelCase), enums are their value names, 64-bit integers are
strings, well-known types take their JSON forms (Timestamp: RFC 3339, Duration: "1.5s"), maps are
objects. Comments in the .proto files become descriptions; google.api.field_behavior REQUIRED
becomes `required`, OUTPUT_ONLY `readOnly`, INPUT_ONLY `writeOnly`. A oneof is documented on its
fields and listed under `x-oneof`.
"""

from __future__ import annotations

from typing import Any

from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2

from gateway.protoindex import Message, ProtoIndex

Schema = dict[str, Any]
FieldProto = descriptor_pb2.FieldDescriptorProto

_INT64: Schema = {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
_UINT64: Schema = {"type": "string", "format": "uint64", "pattern": "^[0-9]+$"}
_INT32: Schema = {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
_UINT32: Schema = {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**32 - 1}

SCALARS: dict[int, Schema] = {
    FieldProto.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldProto.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldProto.TYPE_INT64: _INT64,
    FieldProto.TYPE_SINT64: _INT64,
    FieldProto.TYPE_SFIXED64: _INT64,
    FieldProto.TYPE_UINT64: _UINT64,
    FieldProto.TYPE_FIXED64: _UINT64,
    FieldProto.TYPE_INT32: _INT32,
    FieldProto.TYPE_SINT32: _INT32,
    FieldProto.TYPE_SFIXED32: _INT32,
    FieldProto.TYPE_UINT32: _UINT32,
    FieldProto.TYPE_FIXED32: _UINT32,
    FieldProto.TYPE_BOOL: {"type": "boolean"},
    FieldProto.TYPE_STRING: {"type": "string"},
    FieldProto.TYPE_BYTES: {"type": "string", "format": "byte"},
}

DURATION_PATTERN = r"^-?[0-9]{1,12}(\.[0-9]{1,9})?s$"


def _wrapper(schema: Schema) -> Schema:
    return {**schema, "nullable": True}


# Well-known types that print as JSON scalars (usable as query parameters too).
SCALAR_WELL_KNOWN: dict[str, Schema] = {
    "google.protobuf.Timestamp": {
        "type": "string",
        "format": "date-time",
        "description": "RFC 3339 date-time, e.g. `2025-01-31T12:00:00Z`.",
    },
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": DURATION_PATTERN,
        "description": 'Seconds with an `s` suffix, e.g. `"1.5s"`.',
    },
    "google.protobuf.FieldMask": {
        "type": "string",
        "description": "Comma-separated field paths, e.g. `name,retryPolicy`.",
    },
    "google.protobuf.DoubleValue": _wrapper(SCALARS[FieldProto.TYPE_DOUBLE]),
    "google.protobuf.FloatValue": _wrapper(SCALARS[FieldProto.TYPE_FLOAT]),
    "google.protobuf.Int64Value": _wrapper(_INT64),
    "google.protobuf.UInt64Value": _wrapper(_UINT64),
    "google.protobuf.Int32Value": _wrapper(_INT32),
    "google.protobuf.UInt32Value": _wrapper(_UINT32),
    "google.protobuf.BoolValue": _wrapper(SCALARS[FieldProto.TYPE_BOOL]),
    "google.protobuf.StringValue": _wrapper(SCALARS[FieldProto.TYPE_STRING]),
    "google.protobuf.BytesValue": _wrapper(SCALARS[FieldProto.TYPE_BYTES]),
}

WELL_KNOWN: dict[str, Schema] = {
    **SCALAR_WELL_KNOWN,
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {"description": "Any JSON value."},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": True,
    },
}


def behaviors(field: FieldProto) -> set[int]:
    return set(field.options.Extensions[field_behavior_pb2.field_behavior])


def is_required(field: FieldProto) -> bool:
    return field_behavior_pb2.REQUIRED in behaviors(field)


def in_real_oneof(field: FieldProto) -> bool:
    return field.HasField("oneof_index") and not field.proto3_optional


class SchemaBuilder:
    """Builds schemas on demand; every message or enum referenced lands in `components`."""

    def __init__(self, index: ProtoIndex, package: str) -> None:
        self.index = index
        self.package = package
        self.components: dict[str, Schema] = {}

    def component_name(self, full_name: str) -> str:
        prefix = f"{self.package}."
        return full_name[len(prefix) :] if full_name.startswith(prefix) else full_name

    def ref(self, name: str) -> Schema:
        return {"$ref": f"#/components/schemas/{name}"}

    def message_ref(self, type_name: str) -> Schema:
        """The schema of a message type: a well-known type inline, any other one by reference."""
        full_name = type_name.lstrip(".")
        if full_name in WELL_KNOWN:
            return dict(WELL_KNOWN[full_name])
        name = self.component_name(full_name)
        if name not in self.components:
            self.components[name] = {}  # placeholder: recursive messages refer to themselves
            self.components[name] = self.message_schema(self.index.message(full_name))
        return self.ref(name)

    def add_component(self, name: str, schema: Schema) -> Schema:
        if name in self.components:
            raise ValueError(f"schema name {name!r} is used twice")
        self.components[name] = schema
        return self.ref(name)

    def message_schema(self, message: Message, exclude: frozenset[str] = frozenset()) -> Schema:
        """An object schema of the message's fields, leaving out the fields named in `exclude`."""
        properties: dict[str, Schema] = {}
        required: list[str] = []
        for field in message.proto.field:
            if field.name in exclude:
                continue
            properties[field.json_name] = self.field_schema(message, field)
            if is_required(field):
                required.append(field.json_name)
        schema: Schema = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        oneofs = self._oneofs(message, exclude)
        notes = [f"Oneof `{name}`: at most one of {_codes(members)}." for name, members in oneofs.items()]
        description = "\n\n".join(text for text in (message.comment, *notes) if text)
        if description:
            schema["description"] = description
        if oneofs:
            schema["x-oneof"] = oneofs
        return schema

    def field_schema(self, message: Message, field: FieldProto) -> Schema:
        """The schema of one field, with its comment, behaviours and oneof membership."""
        notes = [message.field_comments.get(field.name, "")]
        if in_real_oneof(field):
            oneof = message.proto.oneof_decl[field.oneof_index].name
            members = [
                f.json_name for f in message.proto.field if in_real_oneof(f) and f.oneof_index == field.oneof_index
            ]
            notes.append(f"Part of oneof `{oneof}`: set at most one of {_codes(members)}.")
        extras: Schema = {}
        description = "\n\n".join(note for note in notes if note)
        if description:
            extras["description"] = description
        found = behaviors(field)
        if field_behavior_pb2.OUTPUT_ONLY in found:
            extras["readOnly"] = True
        if field_behavior_pb2.INPUT_ONLY in found:
            extras["writeOnly"] = True
        if field.options.deprecated:
            extras["deprecated"] = True
        return _annotate(self.value_schema(field), extras)

    def value_schema(self, field: FieldProto) -> Schema:
        """Map, repeated or single value, without the field's own annotations."""
        if field.type == FieldProto.TYPE_MESSAGE and field.label == FieldProto.LABEL_REPEATED:
            entry = self.index.message(field.type_name)
            if entry.is_map_entry:
                return {"type": "object", "additionalProperties": self.single_schema(entry.field("value"))}
        if field.label == FieldProto.LABEL_REPEATED:
            return {"type": "array", "items": self.single_schema(field)}
        return self.single_schema(field)

    def single_schema(self, field: FieldProto) -> Schema:
        if field.type == FieldProto.TYPE_MESSAGE:
            return self.message_ref(field.type_name)
        if field.type == FieldProto.TYPE_ENUM:
            return self.enum_ref(field.type_name)
        return dict(SCALARS[field.type])

    def enum_ref(self, type_name: str) -> Schema:
        enum = self.index.enum(type_name)
        name = self.component_name(enum.full_name)
        if name not in self.components:
            values = [value.name for value in enum.proto.value]
            lines = [
                f"- `{value}`: {enum.value_comments[value]}" for value in values if value in enum.value_comments
            ]
            description = "\n\n".join(part for part in (enum.comment, "\n".join(lines)) if part)
            schema: Schema = {"type": "string", "enum": values}
            if description:
                schema["description"] = description
            self.components[name] = schema
        return self.ref(name)

    def _oneofs(self, message: Message, exclude: frozenset[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for field in message.proto.field:
            if in_real_oneof(field) and field.name not in exclude:
                found.setdefault(message.proto.oneof_decl[field.oneof_index].name, []).append(field.json_name)
        return found


def _annotate(schema: Schema, extras: Schema) -> Schema:
    """Adds annotations to a schema; a $ref takes no siblings in OpenAPI 3.0, so wrap it in allOf."""
    if not extras:
        return schema
    if "$ref" in schema:
        return {"allOf": [schema], **extras}
    merged = {**schema, **extras}
    if "description" in schema and "description" in extras:
        merged["description"] = f"{extras['description']}\n\n{schema['description']}"
    return merged


def _codes(names: list[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)
