"""What a template sees as `secrets`: the attempt's secret values by name, and nothing else (no
iteration, no keys, no methods), so a template can only name the secrets it was written with."""

from __future__ import annotations

from collections.abc import Mapping


class MissingSecret(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"secret {name!r} does not exist (or is sealed under a key this mesh no longer has): "
            "create it with `taskmesh secrets create`"
        )
        self.name = name


class SecretValues:
    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    def __getitem__(self, name: str) -> str:
        try:
            return self._values[name]
        except KeyError:
            raise MissingSecret(name) from None

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __repr__(self) -> str:
        return "<secrets>"
