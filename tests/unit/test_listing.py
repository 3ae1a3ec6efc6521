from datetime import UTC, datetime

import pytest

from taskmesh import listing
from taskmesh.records import Condition
from taskmesh.service_errors import InvalidArgument

FIELDS = {"name": ("=", "!=", ":"), "state": ("=", "!="), "labels.*": ("=", ":")}
VALUES = {"state": frozenset({"QUEUED", "FAILED"})}


def test_parses_terms_joined_by_and() -> None:
    parsed = listing.parse_filter('name:"night ly" AND state=FAILED AND labels.team = data', FIELDS, VALUES)
    assert parsed == [
        Condition("name", ":", "night ly"),
        Condition("state", "=", "FAILED"),
        Condition("labels.team", "=", "data"),
    ]


def test_empty_filter_is_no_condition() -> None:
    assert listing.parse_filter("  ", FIELDS) == []


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("owner=me", "unknown field 'owner'"),
        ("state:FAIL", "does not support ':'"),
        ("state=DONE", "must be one of"),
        ("name=", "cannot parse"),
        ("name=a OR name=b", "cannot parse"),
    ],
)
def test_bad_filters_name_the_field(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        listing.parse_filter(text, FIELDS, VALUES)
    assert caught.value.field == "filter"
    assert fragment in caught.value.message


def test_page_tokens_round_trip() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    token = listing.encode_page_token(when, "01a21a18-3bc8-7342-ba21-baae2f33716c")
    page = listing.decode_page_token(token)
    assert page is not None
    assert page.after_time == when
    assert page.after_id == "01a21a18-3bc8-7342-ba21-baae2f33716c"


@pytest.mark.parametrize("token", ["garbage", "e30", "eyJ0IjogIjIwMjYiLCAiaSI6ICJ4In0"])
def test_forged_page_tokens_are_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        listing.decode_page_token(token)
    assert caught.value.field == "page_token"


@pytest.mark.parametrize(("size", "expected"), [(0, 50), (1, 1), (1000, 1000)])
def test_page_size(size: int, expected: int) -> None:
    assert listing.page_size(size) == expected


@pytest.mark.parametrize("size", [-1, 1001])
def test_page_size_out_of_range(size: int) -> None:
    with pytest.raises(InvalidArgument, match="page_size"):
        listing.page_size(size)


def test_offset_tokens_belong_to_their_list() -> None:
    token = listing.encode_offset_token(42, scope="run-a/0")
    assert listing.decode_offset_token(token, scope="run-a/0") == 42
    assert listing.decode_offset_token("", scope="run-a/0") == 0
    with pytest.raises(InvalidArgument, match="page_token"):
        listing.decode_offset_token(token, scope="run-b/0")
