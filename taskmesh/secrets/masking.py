"""Masks secret values in what a run produces (log lines, result excerpts, errors, outputs, the
rendered request), as CI systems do: every occurrence of a value is replaced by MASK.

A value is also masked line by line (a multi-line key printed over several log lines), and in
the forms a program most often prints it in: JSON-escaped and URL-encoded. What cannot be caught
is a value the program transforms some other way (base64, reversed): the README says so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

MASK = "***"
# Shorter pieces are not masked on their own (every "a" would become ***), only as part of the
# whole value.
MIN_MASKED_PIECE = 4


class SecretMask:
    def __init__(self, values: Iterable[str]) -> None:
        pieces: set[str] = set()
        for value in values:
            if not value:
                continue
            pieces.add(value)
            pieces.update(_forms(value))
            pieces.update(line for line in value.splitlines() if len(line.strip()) >= MIN_MASKED_PIECE)
        # Longest first, so that a value is masked whole before any piece of it.
        ordered = sorted(pieces, key=len, reverse=True)
        self._values = tuple(v for v in ordered if len(v) > MIN_MASKED_PIECE)
        self._pattern = re.compile("|".join(re.escape(p) for p in ordered)) if ordered else None

    @classmethod
    def of(cls, secrets: Mapping[str, str]) -> SecretMask:
        return cls(secrets.values())

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, value: str) -> str:
        if self._pattern is None or not value:
            return value
        return self._edges(self._pattern.sub(MASK, value))

    def _edges(self, text: str) -> str:
        """An excerpt cut inside a value: its start is the value's end, or its end the value's
        start (at least MIN_MASKED_PIECE characters of it)."""
        for value in self._values:
            for size in range(len(value) - 1, MIN_MASKED_PIECE - 1, -1):
                if text.startswith(value[-size:]):
                    text = MASK + text[size:]
                    break
            for size in range(len(value) - 1, MIN_MASKED_PIECE - 1, -1):
                if text.endswith(value[:size]):
                    text = text[:-size] + MASK
                    break
        return text

    def json(self, value: Any) -> Any:
        """A JSON value with every string (keys too) masked."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.json(item) for item in value]
        if isinstance(value, dict):
            return {self.text(str(k)): self.json(v) for k, v in value.items()}
        return value


NO_MASK = SecretMask(())


def _forms(value: str) -> set[str]:
    forms = {json.dumps(value)[1:-1], quote(value, safe=""), quote(value)}
    return {form for form in forms if form != value and len(form) >= MIN_MASKED_PIECE}


def mask_message(message: Message, mask: SecretMask) -> None:
    """Mask, in place, every string field of a protobuf message, nested messages and map values
    included (google.protobuf.Struct/Value too: their strings are fields like any other)."""
    if not mask:
        return
    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_STRING:
            if _is_repeated(field):
                value[:] = [mask.text(v) for v in value]
            else:
                setattr(message, field.name, mask.text(value))
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            assert field.message_type is not None
            if field.message_type.GetOptions().map_entry:
                _mask_map(value, field, mask)
            elif _is_repeated(field):
                for item in value:
                    mask_message(item, mask)
            else:
                mask_message(value, mask)


def _mask_map(value: Any, field: FieldDescriptor, mask: SecretMask) -> None:
    assert field.message_type is not None
    value_field = field.message_type.fields_by_name["value"]
    for key in list(value):
        if value_field.type == FieldDescriptor.TYPE_STRING:
            value[key] = mask.text(value[key])
        elif value_field.type == FieldDescriptor.TYPE_MESSAGE:
            mask_message(value[key], mask)


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)
