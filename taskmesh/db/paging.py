"""Keyset paging, the one shape every list query takes: the filters, then "after the last item of
the previous page" in the list's own order, then that order and a limit. The page token that
carries the position is taskmesh.listing's; this is its SQL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskmesh.db.pg import Query
from taskmesh.records import Page


@dataclass(frozen=True)
class Keyset:
    """A list's order: by `time`, ties broken by `id` (a uuid column; None when `time` is
    unique), newest first when `descending`."""

    time: str
    id: str | None = None
    descending: bool = False

    def after(self) -> str:
        """Rows after Page(:after_time, :after_id) in this order."""
        op = "<" if self.descending else ">"
        if self.id is None:
            return f"{self.time} {op} :after_time"
        return f"({self.time}, {self.id}) {op} (:after_time, CAST(:after_id AS uuid))"

    def order_by(self) -> str:
        direction = "DESC" if self.descending else "ASC"
        return ", ".join(f"{column} {direction}" for column in (self.time, self.id) if column is not None)


def page_query(
    select: str, where: Sequence[str], params: Mapping[str, Any], order: Keyset, page: Page | None, limit: int
) -> tuple[Query, dict[str, Any]]:
    """`select` (SELECT ... FROM ..., no WHERE) filtered by `where` (ANDed), continued after
    `page`, in `order`, at most `limit` rows; and its parameters."""
    clauses = list(where)
    values: dict[str, Any] = {**params, "limit": limit}
    if page is not None:
        clauses.append(order.after())
        values["after_time"] = page.after_time
        if order.id is not None:
            values["after_id"] = page.after_id
    sql = select + (f" WHERE {' AND '.join(clauses)}" if clauses else "")
    return Query(f"{sql} ORDER BY {order.order_by()} LIMIT :limit"), values
