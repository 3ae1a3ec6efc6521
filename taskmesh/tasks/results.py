"""A task's return value as the JSON a run's output holds."""

from __future__ import annotations

import json
from typing import Any

import pydantic
from pydantic_core import PydanticSerializationError


def json_value(value: Any) -> Any:
    """The return value as plain JSON (pydantic models, dataclasses, datetimes included; NaN
    and infinities become null, as pydantic writes them); TypeError or ValueError when JSON
    cannot carry it (arbitrary objects)."""
    try:
        plain = pydantic.TypeAdapter(Any).dump_python(value, mode="json")
    except PydanticSerializationError as error:
        raise TypeError(str(error)) from None
    json.dumps(plain, allow_nan=False)
    return plain
