"""What every command gets: the resolved connection, a lazily opened client, and output."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TextIO, TypeVar

from google.protobuf.message import Message

from taskmesh.cli import output
from taskmesh.cli.config import Connection
from taskmesh.cli.errors import CliError
from taskmesh.client import TaskmeshClient
from taskmesh.client.call_retry import RetryPolicy

M = TypeVar("M", bound=Message)
T = TypeVar("T")


@dataclass
class Context:
    connection: Connection
    config_path: Path
    env: Mapping[str, str]
    output_format: str
    timeout: float
    stdout: TextIO
    stdin: TextIO
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    _client: TaskmeshClient | None = None

    @property
    def json(self) -> bool:
        return self.output_format == "json"

    def client(self) -> TaskmeshClient:
        if self._client is None:
            conn = self.connection
            try:
                self._client = TaskmeshClient(
                    conn.server,
                    token=conn.token,
                    username=conn.username,
                    password=conn.password,
                    timeout=self.timeout,
                    retry=self.retry,
                )
            except ValueError as error:
                raise CliError(f"server address from {conn.server_source}: {error}", 2) from None
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def print(self, text: str) -> None:
        if text:
            self.stdout.write(text + "\n")
            self.stdout.flush()

    def show(self, message: M, as_text: Callable[[M], str]) -> None:
        """One resource: its JSON form, or the human rendering."""
        self.print(output.json_text(output.to_dict(message)) if self.json else as_text(message))

    def show_list(self, items: Iterable[M], as_table: Callable[[Iterable[M]], str], limit: int = 0) -> None:
        """Many resources: a JSON array, or a table."""
        chosen = list(take(items, limit))
        if self.json:
            self.print(output.json_text([output.to_dict(item) for item in chosen]))
        else:
            self.print(as_table(chosen))


def take(items: Iterable[T], limit: int) -> Iterator[T]:
    """The first `limit` items (all when limit is 0): stops fetching pages once it has enough."""
    return iter(items) if limit <= 0 else islice(items, limit)
