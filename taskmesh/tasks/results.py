"""A task's return value as the JSON a run's output holds."""

from __future__ import annotations

import json
from typing import Any

import pydantic
from pydantic_core import PydanticSerializationError

# Built once: a TypeAdapter costs about 300 us to build, more than a no-op task's whole run.
_ANY: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(Any)


def json_value(value: Any) -> Any:
    """The return value as plain JSON (pydantic models, dataclasses, datetimes included; NaN
    and infinities become null, as pydantic writes them); TypeError or ValueError when JSON
    cannot carry it (arbitrary objects)."""
    try:
        plain = _ANY.dump_python(value, mode="json")
    except PydanticSerializationError as error:
        raise TypeError(str(error)) from None
    json.dumps(plain, allow_nan=False)
    return plain
