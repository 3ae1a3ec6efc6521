"""The OpenAPI 3.0 document of the REST API, generated from the descriptor set's google.api.http
annotations (never written by hand). scripts/generate.py writes it to gateway/generated/ as
openapi.json and openapi.yaml; the gateway serves both (see gateway/swagger_ui.py).

    python -m gateway.openapi [--descriptor-set PATH] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from gateway.http_rules import Binding, bindings
from gateway.openapi_schemas import (
    SCALAR_WELL_KNOWN,
    FieldProto,
    Schema,
    SchemaBuilder,
    in_real_oneof,
    is_required,
)
from gateway.protoindex import Message, Method, ProtoIndex, Service
from taskmesh.auth import permissions

GENERATED = Path(__file__).parent / "generated"
DESCRIPTOR_SET = GENERATED / "taskmesh.pb"
SECURITY_SCHEME = "bearerAuth"
LOGIN_METHOD = "/taskmesh.v1.AuthService/Login"  # its description tells how to use the token
STATUS_SCHEMA = "google.rpc.Status"
_VARIABLE = re.compile(r"\{([^}]*)\}")
NDJSON = "application/x-ndjson"
QUERY_DEPTH = 3  # how deep message fields are flattened into dotted query parameters

# How Envoy's grpc_json_transcoder (convert_grpc_status) turns gRPC codes into HTTP statuses
# (Envoy's Grpc::Utility::grpcToHttpStatus); tests/e2e/test_openapi.py checks the ones we return.
GRPC_TO_HTTP: list[tuple[int, str, int]] = [
    (1, "CANCELLED", 499),
    (2, "UNKNOWN", 500),
    (3, "INVALID_ARGUMENT", 400),
    (4, "DEADLINE_EXCEEDED", 504),
    (5, "NOT_FOUND", 404),
    (6, "ALREADY_EXISTS", 409),
    (7, "PERMISSION_DENIED", 403),
    (8, "RESOURCE_EXHAUSTED", 429),
    (9, "FAILED_PRECONDITION", 400),
    (10, "ABORTED", 409),
    (11, "OUT_OF_RANGE", 400),
    (12, "UNIMPLEMENTED", 501),
    (13, "INTERNAL", 500),
    (14, "UNAVAILABLE", 503),
    (15, "DATA_LOSS", 500),
    (16, "UNAUTHENTICATED", 401),
]

# Reusable error responses: (component name, HTTP status, what the gateway means by it).
ERROR_RESPONSES: list[tuple[str, str, str]] = [
    (
        "BadRequest",
        "400",
        "Invalid argument (the message starts with the field, e.g. `job.name: is required`), failed "
        "precondition or out of range. Malformed JSON and unknown query parameters are refused by the "
        "gateway itself with a plain-text body.",
    ),
    ("Unauthenticated", "401", "Missing, malformed or expired bearer token, or a wrong username or password."),
    ("PermissionDenied", "403", "The caller's role may not call this method."),
    ("NotFound", "404", "No such resource."),
    ("Conflict", "409", "Already exists (e.g. a job name that is taken) or aborted."),
    ("Error", "default", "Any other gRPC status, mapped as in the table in the API description."),
]


def build_document(index: ProtoIndex, version: str | None = None) -> dict[str, Any]:
    """The OpenAPI document of every service in `index` that has REST bindings."""
    services = [s for s in index.services if any(bindings(m.proto) for m in s.methods)]
    if not services:
        raise ValueError("no method in the descriptor set has a google.api.http binding")
    builder = SchemaBuilder(index, services[0].package)
    paths: dict[str, dict[str, Any]] = {}
    by_shape: dict[str, str] = {}
    for service in services:
        for method in service.methods:
            for number, binding in enumerate(bindings(method.proto)):
                # OpenAPI forbids paths that differ only in variable names ({id} vs {job.id}).
                path = by_shape.setdefault(_shape(binding.openapi_path), binding.openapi_path)
                operations = paths.setdefault(path, {})
                if binding.verb in operations:
                    raise ValueError(f"{binding.verb.upper()} {binding.template} is bound twice")
                operation = _Operation(builder, service, method, binding, number, _VARIABLE.findall(path))
                operations[binding.verb] = operation.build()
    builder.add_component(STATUS_SCHEMA, _status_schema())
    return {
        "openapi": "3.0.3",
        "info": {"title": "Taskmesh API", "version": version or _version(), "description": _description()},
        "servers": [{"url": "/", "description": "this gateway"}],
        "tags": [{"name": s.name, "description": s.comment} if s.comment else {"name": s.name} for s in services],
        "security": [{SECURITY_SCHEME: []}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(builder.components.items())),
            "responses": {name: _error_response(text) for name, _, text in ERROR_RESPONSES},
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT or API key",
                    "description": "The `accessToken` that `POST /api/auth/login` returns, or a service "
                    "account's API key (`tmk_...`, from `POST /api/service-accounts/{service_account}/keys`).",
                }
            },
        },
    }


def _shape(path: str) -> str:
    return _VARIABLE.sub("{}", path)


class _Operation:
    """One OpenAPI operation: one REST binding of one RPC."""

    def __init__(
        self,
        builder: SchemaBuilder,
        service: Service,
        method: Method,
        binding: Binding,
        number: int,
        path_names: list[str],
    ) -> None:
        self.path_names = path_names  # the document's names for the binding's path variables
        self.builder = builder
        self.service = service
        self.method = method
        self.binding = binding
        self.number = number
        self.request = builder.index.message(method.proto.input_type)
        self.public = permissions.is_public(method.grpc_path)

    def build(self) -> dict[str, Any]:
        operation: dict[str, Any] = {
            "tags": [self.service.name],
            "operationId": f"{self.service.name}_{self.method.name}"
            + (str(self.number + 1) if self.number else ""),
            "summary": _summary(self.method),
            "description": self._description(),
            "parameters": self._path_parameters() + self._query_parameters(),
        }
        body = self._request_body()
        if body:
            operation["requestBody"] = body
        operation["responses"] = self._responses()
        if self.public:
            operation["security"] = []
        operation["x-grpc-method"] = self.method.grpc_path
        return operation

    def _description(self) -> str:
        parts = [self.method.comment] if self.method.comment else []
        parts.append(f"gRPC: `{self.method.grpc_path}`.")
        if self.public:
            parts.append("No token needed.")
        else:
            roles = sorted(role.value for role in permissions.PERMISSIONS.get(self.method.grpc_path, frozenset()))
            parts.append(f"Roles: {', '.join(roles)}." if roles else "No role may call this method yet.")
        if self.method.proto.server_streaming:
            parts.append("Streams newline-delimited JSON: one message per line, until the stream ends.")
        if self.method.grpc_path == LOGIN_METHOD:
            parts.append(
                "Send the `accessToken` of the response as `Authorization: Bearer <accessToken>` "
                "(in Swagger UI: **Authorize**; a successful Login here authorizes the page by itself)."
            )
        return "\n\n".join(parts)

    def _path_parameters(self) -> list[dict[str, Any]]:
        parameters = []
        for variable, name in zip(self.binding.variables, self.path_names, strict=True):
            message, field = _resolve(self.builder.index, self.request, variable.field_path)
            schema = self.builder.value_schema(field)
            notes = [message.field_comments.get(field.name, "")]
            if name != variable.field_path:
                notes.append(f"Sets the request's `{variable.field_path}`.")
            if variable.pattern != "*":
                notes.append(f"Matches `{variable.pattern}`.")
            description = "\n\n".join(note for note in notes if note)
            parameter: dict[str, Any] = {"name": name, "in": "path", "required": True, "schema": schema}
            if description:
                parameter["description"] = description
            parameters.append(parameter)
        return parameters

    def _query_parameters(self) -> list[dict[str, Any]]:
        if self.binding.body == "*":
            return []
        skip = set(self.binding.path_fields)
        if self.binding.body:
            skip.add(self.binding.body)
        return _query_fields(self.builder, self.request, skip, "", "", (self.request.full_name,))

    def _request_body(self) -> dict[str, Any] | None:
        if not self.binding.body:
            return None
        if self.binding.body == "*":
            top_level = frozenset(p for p in self.binding.path_fields if "." not in p)
            if top_level:
                name = f"{self.service.name}.{self.method.name}Body"
                body = self.builder.message_schema(self.request, top_level)
                existing = self.builder.components.get(name)
                schema = self.builder.ref(name) if existing == body else self.builder.add_component(name, body)
            else:
                schema = self.builder.message_ref(self.method.proto.input_type)
            # Only REQUIRED fields make a body necessary: `POST /api/jobs/{id}/trigger` may omit it.
            required = any(is_required(f) for f in self.request.proto.field if f.name not in top_level)
        else:
            field = self.request.field(self.binding.body)
            schema = self.builder.value_schema(field)
            required = is_required(field)
        return {"required": required, "content": {"application/json": {"schema": schema}}}

    def _responses(self) -> dict[str, Any]:
        responses: dict[str, Any] = {"200": self._success()}
        statuses = ["400", "401"]
        if not self.public:
            statuses.append("403")
        if self.binding.variables:
            statuses.append("404")
        if self.binding.verb in ("post", "put", "patch"):
            statuses.append("409")
        for name, status, _ in ERROR_RESPONSES:
            if status in statuses or status == "default":
                responses[status] = {"$ref": f"#/components/responses/{name}"}
        return responses

    def _success(self) -> dict[str, Any]:
        output = self.method.proto.output_type
        if self.binding.response_body:
            schema = self.builder.value_schema(
                self.builder.index.message(output).field(self.binding.response_body)
            )
        else:
            schema = self.builder.message_ref(output)
        if self.method.proto.server_streaming:
            name = self.builder.component_name(output.lstrip("."))
            return {
                "description": f"A stream of {name} messages, one JSON object per line (Envoy labels "
                "it `Content-Type: application/json`).",
                "content": {NDJSON: {"schema": schema}},
            }
        return {"description": "OK", "content": {"application/json": {"schema": schema}}}


def _resolve(index: ProtoIndex, message: Message, field_path: str) -> tuple[Message, FieldProto]:
    """The message holding the last field of a dotted path, and that field."""
    *parents, last = field_path.split(".")
    for name in parents:
        message = index.message(message.field(name).type_name)
    return message, message.field(last)


def _query_fields(
    builder: SchemaBuilder,
    message: Message,
    skip: set[str],
    proto_prefix: str,
    json_prefix: str,
    seen: tuple[str, ...],
) -> list[dict[str, Any]]:
    """Query parameters for the fields not bound elsewhere; message fields flatten to `a.b`."""
    parameters: list[dict[str, Any]] = []
    for field in message.proto.field:
        proto_path, json_path = proto_prefix + field.name, json_prefix + field.json_name
        if proto_path in skip:
            continue
        nested = _nested_message(builder, field)
        if nested is not None:
            if (
                field.label != FieldProto.LABEL_REPEATED
                and nested.full_name not in seen
                and len(seen) < QUERY_DEPTH
            ):
                parameters += _query_fields(
                    builder, nested, skip, proto_path + ".", json_path + ".", (*seen, nested.full_name)
                )
            continue
        parameters.append(_query_parameter(builder, message, field, json_path))
    return parameters


def _nested_message(builder: SchemaBuilder, field: FieldProto) -> Message | None:
    """The message a field holds, unless it is a map or prints as a JSON scalar."""
    if field.type != FieldProto.TYPE_MESSAGE or field.type_name.lstrip(".") in SCALAR_WELL_KNOWN:
        return None
    return builder.index.message(field.type_name)


def _query_parameter(builder: SchemaBuilder, message: Message, field: FieldProto, name: str) -> dict[str, Any]:
    parameter: dict[str, Any] = {"name": name, "in": "query", "schema": builder.value_schema(field)}
    notes = [message.field_comments.get(field.name, "")]
    if in_real_oneof(field):
        notes.append(f"Part of oneof `{message.proto.oneof_decl[field.oneof_index].name}`.")
    description = "\n\n".join(note for note in notes if note)
    if description:
        parameter["description"] = description
    if is_required(field):
        parameter["required"] = True
    if field.label == FieldProto.LABEL_REPEATED:
        parameter["style"], parameter["explode"] = "form", True
    return parameter


def _summary(method: Method) -> str:
    if method.comment:
        first = method.comment.split("\n\n", 1)[0].replace("\n", " ")
        return re.split(r"(?<=[.;])\s", first, maxsplit=1)[0].rstrip(".;")
    words = re.findall(r"[A-Z][a-z0-9]*", method.name)
    return " ".join([words[0], *(w.lower() for w in words[1:])]) if words else method.name


def _status_schema() -> Schema:
    return {
        "type": "object",
        "description": "An error: the gRPC status the server returned, as the gateway prints it.",
        "properties": {
            "code": {
                "type": "integer",
                "format": "int32",
                "description": "gRPC status code (see the table above).",
            },
            "message": {"type": "string", "description": "What went wrong, for a person."},
            "details": {"type": "array", "items": {"type": "object", "additionalProperties": True}},
        },
        "required": ["code", "message"],
    }


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{STATUS_SCHEMA}"}},
            "text/plain": {"schema": {"type": "string"}},
        },
    }


def _description() -> str:
    by_status: dict[int, list[str]] = {}
    for code, name, status in GRPC_TO_HTTP:
        by_status.setdefault(status, []).append(f"{name} ({code})")
    rows = "\n".join(f"| {status} | {', '.join(names)} |" for status, names in sorted(by_status.items()))
    return f"""REST/JSON face of the Taskmesh gRPC API, transcoded by the Envoy gateway from the \
`google.api.http` annotations in `protos/taskmesh/v1`. This document is generated from the same \
descriptor set.

**Authentication.** `POST /api/auth/login` with a username and password returns an `accessToken`; \
send it as `Authorization: Bearer <accessToken>` on every other call. In Swagger UI, click \
**Authorize** and paste it, or run Login with *Try it out*: a successful Login authorizes the page.

**JSON.** Field names are lowerCamelCase (snake_case is accepted on input); enums are their value \
names; 64-bit integers are strings; timestamps are RFC 3339 (`2025-01-31T12:00:00Z`); durations \
are seconds with an `s` suffix (`"1.5s"`); field masks are comma-separated paths. Unset fields print \
their zero values. Streaming methods answer newline-delimited JSON.

**Errors** carry a JSON body `{{"code": <gRPC code>, "message": "...", "details": []}}` and an HTTP \
status mapped from the gRPC code:

| HTTP status | gRPC codes |
| --- | --- |
{rows}
"""


def _version() -> str:
    try:
        return metadata.version("taskmesh")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def write_documents(descriptor_set: Path = DESCRIPTOR_SET, out_dir: Path = GENERATED) -> list[Path]:
    """Write openapi.json and openapi.yaml for the descriptor set; return their paths."""
    document = build_document(ProtoIndex.load(descriptor_set))
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, yaml_path = out_dir / "openapi.json", out_dir / "openapi.yaml"
    json_path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    yaml_path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100))
    return [json_path, yaml_path]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--descriptor-set", type=Path, default=DESCRIPTOR_SET)
    parser.add_argument("--out", type=Path, default=GENERATED)
    args = parser.parse_args()
    for path in write_documents(args.descriptor_set, args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
