"""taskmesh.db.paging: the keyset page statement every list query is built from."""

from __future__ import annotations

from datetime import UTC, datetime

from taskmesh.db.paging import Keyset, page_query
from taskmesh.records import Page

AFTER = Page(datetime(2026, 1, 1, tzinfo=UTC), "00000000-0000-0000-0000-000000000001")


def test_a_first_page_is_the_filters_the_order_and_the_limit() -> None:
    query, params = page_query("SELECT id FROM t", ["a = :a"], {"a": 1}, Keyset("create_time", "id"), None, 10)
    assert query.sql == "SELECT id FROM t WHERE a = :a ORDER BY create_time ASC, id ASC LIMIT :limit"
    assert params == {"a": 1, "limit": 10}


def test_a_later_page_continues_after_the_position_in_the_lists_own_order() -> None:
    newest_first = Keyset("r.queue_time", "r.id", descending=True)
    query, params = page_query("SELECT id FROM runs r", [], {}, newest_first, AFTER, 5)
    assert query.sql == (
        "SELECT id FROM runs r WHERE (r.queue_time, r.id) < (:after_time, CAST(:after_id AS uuid))"
        " ORDER BY r.queue_time DESC, r.id DESC LIMIT :limit"
    )
    assert params == {"limit": 5, "after_time": AFTER.after_time, "after_id": AFTER.after_id}


def test_a_unique_time_needs_no_id() -> None:
    query, params = page_query(
        "SELECT * FROM s", ["job_id = :j"], {"j": "x"}, Keyset("slot_time", descending=True), AFTER, 3
    )
    assert (
        query.sql
        == "SELECT * FROM s WHERE job_id = :j AND slot_time < :after_time ORDER BY slot_time DESC LIMIT :limit"
    )
    assert "after_id" not in params
