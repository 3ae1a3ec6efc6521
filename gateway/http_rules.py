"""The REST bindings of an RPC, read from its google.api.http option (google/api/http.proto).

A rule binds one verb and path template, plus any additional_bindings. Path variables
`{field.path}` or `{field.path=pattern}` take fields of the request; `body: "*"` takes every
other field from the JSON body, `body: "field"` takes that one field from it, and every field
left over is a query parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

_VARIABLE = re.compile(r"\{([^}=]+)(?:=([^}]*))?\}")
_VERBS = ("get", "put", "post", "delete", "patch")


@dataclass(frozen=True)
class PathVariable:
    field_path: str  # request field, dotted: job.id
    pattern: str  # segment pattern; "*" (one segment) unless the template says otherwise


@dataclass(frozen=True)
class Binding:
    verb: str  # lower case: get, post...
    template: str  # as written in the proto: /api/jobs/{id}:pause
    variables: tuple[PathVariable, ...]
    body: str  # "" (no body), "*" or a top-level request field name
    response_body: str  # "" (the whole response) or a response field name

    @property
    def openapi_path(self) -> str:
        """The template with `{field=pattern}` variables reduced to `{field}`."""
        return _VARIABLE.sub(lambda match: "{" + match.group(1).strip() + "}", self.template)

    @property
    def path_fields(self) -> frozenset[str]:
        return frozenset(variable.field_path for variable in self.variables)


def http_rule(method: descriptor_pb2.MethodDescriptorProto) -> http_pb2.HttpRule | None:
    if not method.options.HasExtension(annotations_pb2.http):
        return None
    rule: http_pb2.HttpRule = method.options.Extensions[annotations_pb2.http]
    return rule


def bindings(method: descriptor_pb2.MethodDescriptorProto) -> list[Binding]:
    """Every REST binding of the method, the primary one first; empty when it has none."""
    rule = http_rule(method)
    if rule is None:
        return []
    return [_binding(rule, method.name), *(_binding(extra, method.name) for extra in rule.additional_bindings)]


def _binding(rule: http_pb2.HttpRule, method_name: str) -> Binding:
    verb, template = _pattern(rule, method_name)
    variables = tuple(
        PathVariable(match.group(1).strip(), (match.group(2) or "*").strip())
        for match in _VARIABLE.finditer(template)
    )
    return Binding(verb, template, variables, rule.body, rule.response_body)


def _pattern(rule: http_pb2.HttpRule, method_name: str) -> tuple[str, str]:
    kind = rule.WhichOneof("pattern")
    if kind in _VERBS:
        return str(kind), str(getattr(rule, str(kind)))
    if kind == "custom" and rule.custom.kind.lower() in ("head", "options"):
        return rule.custom.kind.lower(), rule.custom.path
    raise ValueError(f"{method_name}: unsupported google.api.http pattern {kind!r}")
