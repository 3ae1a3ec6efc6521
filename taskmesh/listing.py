"""List requests: page sizes, opaque page tokens (keyset positions) and AIP-160-style filters."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime

from taskmesh.ids import is_uuid
from taskmesh.records import Condition, Page
from taskmesh.service_errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# A page ends early once its items' serialized size reaches this, whatever page_size asked:
# the gateway buffers a whole answer to transcode it (gateway/config.py MAX_RESPONSE_BODY_BYTES).
PAGE_BYTES = 1 << 20
MAX_FILTER = 2048


def page_size(
    value: int, field: str = "page_size", default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE
) -> int:
    if value == 0:
        return default
    if value < 0 or value > maximum:
        raise InvalidArgument(field, f"must be between 1 and {maximum}")
    return value


def page_length(sizes: Iterable[int], limit: int, budget: int = PAGE_BYTES) -> int:
    """How many of the items (their serialized sizes, in list order) go on a page of at most
    `limit` items: the first one always, then more while the total stays within `budget`."""
    count = total = 0
    for size in sizes:
        if count == limit or (count and total + size > budget):
            break
        count += 1
        total += size
    return count


def encode_offset_token(after_id: int, scope: str) -> str:
    """A position in a list that belongs to `scope` (e.g. a run id)."""
    return base64.urlsafe_b64encode(json.dumps({"a": after_id, "s": scope}).encode()).decode().rstrip("=")


def decode_offset_token(token: str, scope: str, field: str = "page_token") -> int:
    """The position an offset token names (0 for none); a token of another scope is refused."""
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        value, token_scope = data["a"], data["s"]
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise InvalidArgument(field, "is not a token returned by a previous page") from error
    if not isinstance(value, int) or value < 0 or token_scope != scope:
        raise InvalidArgument(field, "is not a token returned by a previous page of this list")
    return value


def encode_key_token(after_key: str) -> str:
    """A position in a list ordered by a text key (ListConcurrencyKeys)."""
    return base64.urlsafe_b64encode(json.dumps({"k": after_key}).encode()).decode().rstrip("=")


def decode_key_token(token: str, field: str = "page_token") -> str:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        key = data["k"]
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise InvalidArgument(field, "is not a token returned by a previous page") from error
    if not isinstance(key, str):
        raise InvalidArgument(field, "is not a token returned by a previous page")
    return key


def encode_page_token(after_time: datetime, after_id: str) -> str:
    raw = json.dumps({"t": after_time.isoformat(), "i": after_id}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, field: str = "page_token") -> Page | None:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        page = Page(after_time=datetime.fromisoformat(data["t"]), after_id=str(data["i"]))
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise InvalidArgument(field, "is not a token returned by a previous page") from error
    if not is_uuid(page.after_id) or page.after_time.tzinfo is None:
        raise InvalidArgument(field, "is not a token returned by a previous page")
    return page


_TERM = re.compile(
    r"""\s*(?P<field>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_./-]+)?)\s*(?P<op>!=|=|:)\s*
        (?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[A-Za-z0-9_.@/-]+))\s*""",
    re.VERBOSE,
)


def parse_filter(
    text: str,
    allowed: Mapping[str, tuple[str, ...]],
    values: Mapping[str, frozenset[str]] | None = None,
    field: str = "filter",
) -> list[Condition]:
    """Parse 'a = "x" AND b != y AND c : z'. `allowed` maps each field (or 'labels.*') to its
    operators; `values` optionally restricts a field's values (enum names)."""
    if len(text) > MAX_FILTER:
        raise InvalidArgument(field, f"must be at most {MAX_FILTER} characters")
    if not text.strip():
        return []
    conditions = []
    for part in re.split(r"\s+AND\s+", text.strip()):
        match = _TERM.fullmatch(part)
        if match is None:
            raise InvalidArgument(field, f"cannot parse {part!r}; expected field=value joined by AND")
        name, op = match["field"], match["op"]
        value = match["bare"] if match["bare"] is not None else re.sub(r"\\(.)", r"\1", match["quoted"])
        key = "labels.*" if name.startswith("labels.") else name
        if key not in allowed:
            raise InvalidArgument(field, f"unknown field {name!r}; filterable: {', '.join(sorted(allowed))}")
        if op not in allowed[key]:
            raise InvalidArgument(field, f"{name} does not support {op!r}")
        if values and key in values and value not in values[key]:
            raise InvalidArgument(field, f"{name} must be one of {', '.join(sorted(values[key]))}")
        conditions.append(Condition(field=name, op=op, value=value))
    return conditions
