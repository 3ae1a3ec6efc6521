"""Which secrets a job's templates reference: literal names only.

A template may name a secret as `secrets.NAME` or `secrets['NAME']`; anything else that touches
`secrets` (`secrets[params.which]`, `{% set s = secrets %}`, `secrets | list`) is refused at
CreateJob/UpdateJob, so that whoever may trigger a job cannot choose which secret it reads, and
the scheduler knows, from the job alone, the secrets an attempt needs (it sends only those).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from jinja2 import Environment, TemplateSyntaxError, nodes

SECRETS = "secrets"
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_PARSER = Environment(autoescape=False)


class InvalidSecretReference(ValueError):
    """A template uses `secrets` other than by a literal, valid name."""


def referenced_secrets(templates: Iterable[str]) -> frozenset[str]:
    """The secret names the templates reference. Raises InvalidSecretReference."""
    names: set[str] = set()
    for text in templates:
        if SECRETS in text and "{" in text:
            names.update(_references(text))
    return frozenset(names)


def check_references(value: Any, path: str) -> None:
    """Raise InvalidSecretReference, its message starting with the field's path, for the first
    string inside a JSON value (an executor) that uses `secrets` other than by literal name."""
    for field, text in _strings_with_paths(value, path):
        try:
            referenced_secrets((text,))
        except InvalidSecretReference as error:
            raise InvalidSecretReference(f"{field}: {error}") from None


def _strings_with_paths(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings_with_paths(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings_with_paths(item, f"{path}[{index}]")


def declared_secrets(executor: Any) -> frozenset[str]:
    """The names a Python task's executor lists ({"python": {"secrets": [...]}})."""
    python = executor.get("python") if isinstance(executor, dict) else None
    names = python.get("secrets", []) if isinstance(python, dict) else []
    return frozenset(n for n in names if isinstance(n, str) and NAME.match(n))


def strings_of(value: Any) -> Iterator[str]:
    """Every string inside a JSON value (an executor as protobuf JSON): where templates live."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_of(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_of(item)


def _references(text: str) -> set[str]:
    try:
        tree = _PARSER.parse(text)
    except TemplateSyntaxError:
        return set()  # not ours to report: the template check names the field
    found: set[str] = set()
    allowed: set[int] = set()  # ids of the `secrets` Name nodes used by a literal name
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)
        target = node.node
        if not (isinstance(target, nodes.Name) and target.name == SECRETS):
            continue
        name = node.attr if isinstance(node, nodes.Getattr) else _literal(node.arg)
        if name is None or not NAME.match(name):
            raise InvalidSecretReference(
                "a secret must be named literally: {{ secrets.NAME }} or {{ secrets['NAME'] }}"
            )
        found.add(name)
        allowed.add(id(target))
    for name_node in tree.find_all(nodes.Name):
        if name_node.name == SECRETS and id(name_node) not in allowed:
            raise InvalidSecretReference(
                "`secrets` can only be used as {{ secrets.NAME }} or {{ secrets['NAME'] }}"
            )
    return found


def _literal(node: nodes.Node) -> str | None:
    return node.value if isinstance(node, nodes.Const) and isinstance(node.value, str) else None
