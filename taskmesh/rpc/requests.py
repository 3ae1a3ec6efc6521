"""Requests every server refuses before a method sees them: bytes that are no message of the
method's type, and strings PostgreSQL cannot store (NUL) or UTF-8 cannot encode (lone
surrogates). One walk over the message's descriptor covers every string field, map key and
value, at any depth, so no method validates these by hand.

Streamed requests (WorkerService: log lines, output excerpts, error messages) carry what job
programs printed, which may hold NUL: there it becomes U+FFFD instead of a refusal, which
would end the worker's stream and leave its outcome unrecordable."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from taskmesh.service_errors import InvalidArgument

Deserializer = Callable[[bytes], Any]

_UNREPRESENTABLE = re.compile("[\x00\ud800-\udfff]")


class Refused:
    """What a unary request decodes to when it must be refused: grpc decodes before any
    interceptor runs, and an exception there would answer UNKNOWN (and before the caller is
    authenticated), so `check` raises the error inside the guard."""

    def __init__(self, error: InvalidArgument) -> None:
        self.error = error


def tolerant(deserializer: Deserializer | None) -> Deserializer | None:
    """For unary requests: bytes that are no message, or a message with a NUL character in a
    string, become a Refused. Decoding has already refused invalid UTF-8 (lone surrogates
    included), and a NUL character is a zero byte in the encoding, so a request without one
    (nearly all) is not walked at all."""
    if deserializer is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            message = deserializer(data)
        except DecodeError as error:
            return Refused(InvalidArgument("request", f"is not a valid message: {error}"))
        if b"\x00" in data and isinstance(message, Message):
            try:
                check_strings(message)
            except InvalidArgument as error:
                return Refused(error)
        return message

    return decode


def strict(deserializer: Deserializer | None) -> Deserializer | None:
    """For streamed requests, decoded as the method reads them: a decode error is an
    InvalidArgument, which the guard answers like any other; NUL characters are replaced."""
    if deserializer is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            message = deserializer(data)
        except DecodeError as error:
            raise InvalidArgument("request", f"is not a valid message: {error}") from error
        if b"\x00" in data and isinstance(message, Message):  # most messages have no zero byte at all
            scrub(message)
        return message

    return decode


def check(request: Any) -> None:
    """Raise the InvalidArgument of a request `tolerant` refused."""
    if isinstance(request, Refused):
        raise request.error


def check_strings(message: Message) -> None:
    """Raise InvalidArgument naming the first string a message must not carry."""
    for path, value in strings(message):
        if _UNREPRESENTABLE.search(value):
            raise InvalidArgument(path, "must not contain NUL characters or unpaired surrogates")


def scrub(message: Message) -> None:
    """Replace unrepresentable characters in every string of the message, in place."""
    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_STRING:
            if field.is_repeated:
                value[:] = [_clean(item) for item in value]
            else:
                setattr(message, field.name, _clean(value))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            entry = field.message_type
            if entry is not None and entry.GetOptions().map_entry:
                _scrub_map(entry.fields_by_name["value"], value)
            elif field.is_repeated:
                for item in value:
                    scrub(item)
            else:
                scrub(value)


def _scrub_map(value_field: FieldDescriptor, entries: Any) -> None:
    for key in list(entries):
        item = entries[key]
        if value_field.type == FieldDescriptor.TYPE_MESSAGE:
            scrub(item)
        elif value_field.type == FieldDescriptor.TYPE_STRING and _UNREPRESENTABLE.search(item):
            entries[key] = _clean(item)
        if isinstance(key, str) and _UNREPRESENTABLE.search(key):
            if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                cleaned = entries[_clean(key)]
                cleaned.CopyFrom(item)
            else:
                entries[_clean(key)] = entries[key]
            del entries[key]


def _clean(value: str) -> str:
    return _UNREPRESENTABLE.sub("\ufffd", value)


def strings(message: Message, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(field path, value) of every string set in the message, map keys included."""
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        if field.type == FieldDescriptor.TYPE_STRING:
            if field.is_repeated:
                yield from ((f"{path}[{i}]", item) for i, item in enumerate(value))
            else:
                yield path, value
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                yield from _map_strings(field.message_type.fields_by_name["value"], value, path)
            elif field.is_repeated:
                for i, item in enumerate(value):
                    yield from strings(item, f"{path}[{i}].")
            else:
                yield from strings(value, f"{path}.")


def _map_strings(value_field: FieldDescriptor, entries: Any, path: str) -> Iterator[tuple[str, str]]:
    for key, value in entries.items():
        if isinstance(key, str):
            yield path, key
        entry_path = f"{path}.{key}"
        if value_field.type == FieldDescriptor.TYPE_STRING:
            yield entry_path, value
        elif value_field.type == FieldDescriptor.TYPE_MESSAGE:
            yield from strings(value, f"{entry_path}.")
