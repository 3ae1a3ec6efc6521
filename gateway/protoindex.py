"""An index of a FileDescriptorSet (as scripts/generate.py writes it, with source info): messages,
enums and services by full name, each with the comments written above it in the .proto files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from google.protobuf import descriptor_pb2

# Paths into FileDescriptorProto / DescriptorProto used by SourceCodeInfo.Location.path.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_ENUM, _MESSAGE_ONEOF = 2, 3, 4, 8
_ENUM_VALUE, _SERVICE_METHOD = 2, 2

Path_ = tuple[int, ...]


@dataclass(frozen=True)
class Message:
    full_name: str  # without the leading dot: taskmesh.v1.Job
    proto: descriptor_pb2.DescriptorProto
    comment: str
    field_comments: dict[str, str]
    oneof_comments: dict[str, str]

    @property
    def is_map_entry(self) -> bool:
        return self.proto.options.map_entry

    def field(self, name: str) -> descriptor_pb2.FieldDescriptorProto:
        for candidate in self.proto.field:
            if candidate.name == name:
                return candidate
        raise KeyError(f"{self.full_name} has no field {name!r}")


@dataclass(frozen=True)
class Enum:
    full_name: str
    proto: descriptor_pb2.EnumDescriptorProto
    comment: str
    value_comments: dict[str, str]


@dataclass(frozen=True)
class Method:
    service: str  # full name of the service
    proto: descriptor_pb2.MethodDescriptorProto
    comment: str

    @property
    def name(self) -> str:
        return self.proto.name

    @property
    def grpc_path(self) -> str:
        return f"/{self.service}/{self.proto.name}"


@dataclass(frozen=True)
class Service:
    full_name: str
    package: str
    comment: str
    methods: list[Method] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.full_name.rsplit(".", 1)[-1]


@dataclass
class ProtoIndex:
    messages: dict[str, Message] = field(default_factory=dict)
    enums: dict[str, Enum] = field(default_factory=dict)
    services: list[Service] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> ProtoIndex:
        return cls.from_file_set(descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes()))

    @classmethod
    def from_file_set(cls, file_set: descriptor_pb2.FileDescriptorSet) -> ProtoIndex:
        index = cls()
        for file in file_set.file:
            index._add_file(file)
        return index

    def message(self, type_name: str) -> Message:
        """The message named by a field's or method's type_name (leading dot optional)."""
        return self.messages[type_name.lstrip(".")]

    def enum(self, type_name: str) -> Enum:
        return self.enums[type_name.lstrip(".")]

    def _add_file(self, file: descriptor_pb2.FileDescriptorProto) -> None:
        comments = _comments(file)
        prefix = f"{file.package}." if file.package else ""
        for i, message in enumerate(file.message_type):
            self._add_message(message, prefix, (_FILE_MESSAGE, i), comments)
        for i, enum in enumerate(file.enum_type):
            self._add_enum(enum, prefix, (_FILE_ENUM, i), comments)
        for i, service in enumerate(file.service):
            full_name = prefix + service.name
            entry = Service(full_name, file.package, comments.get((_FILE_SERVICE, i), ""))
            for j, method in enumerate(service.method):
                comment = comments.get((_FILE_SERVICE, i, _SERVICE_METHOD, j), "")
                entry.methods.append(Method(full_name, method, comment))
            self.services.append(entry)

    def _add_message(
        self, message: descriptor_pb2.DescriptorProto, prefix: str, path: Path_, comments: dict[Path_, str]
    ) -> None:
        full_name = prefix + message.name
        self.messages[full_name] = Message(
            full_name=full_name,
            proto=message,
            comment=comments.get(path, ""),
            field_comments=_children(message.field, (*path, _MESSAGE_FIELD), comments),
            oneof_comments=_children(message.oneof_decl, (*path, _MESSAGE_ONEOF), comments),
        )
        for i, nested in enumerate(message.nested_type):
            self._add_message(nested, full_name + ".", (*path, _MESSAGE_NESTED, i), comments)
        for i, enum in enumerate(message.enum_type):
            self._add_enum(enum, full_name + ".", (*path, _MESSAGE_ENUM, i), comments)

    def _add_enum(
        self, enum: descriptor_pb2.EnumDescriptorProto, prefix: str, path: Path_, comments: dict[Path_, str]
    ) -> None:
        full_name = prefix + enum.name
        values = _children(enum.value, (*path, _ENUM_VALUE), comments)
        self.enums[full_name] = Enum(full_name, enum, comments.get(path, ""), values)


class _Named(Protocol):
    @property
    def name(self) -> str: ...


def _children(items: Sequence[_Named], path: Path_, comments: dict[Path_, str]) -> dict[str, str]:
    return {item.name: comments[(*path, i)] for i, item in enumerate(items) if (*path, i) in comments}


def _comments(file: descriptor_pb2.FileDescriptorProto) -> dict[Path_, str]:
    found: dict[Path_, str] = {}
    for location in file.source_code_info.location:
        text = _clean(location.leading_comments) or _clean(location.trailing_comments)
        if text:
            found[tuple(location.path)] = text
    return found


def _clean(comment: str) -> str:
    lines = [line[1:] if line.startswith(" ") else line for line in comment.splitlines()]
    return "\n".join(lines).strip()
