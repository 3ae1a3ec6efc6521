"""The OpenAPI generator: HttpRule semantics and proto3 JSON schemas, on a made-up API compiled by
protoc (tests/unit/protos), and the document of the real protos."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path
from typing import Any

import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from grpc_tools import protoc
from openapi_spec_validator import validate

from gateway.openapi import DESCRIPTOR_SET, GRPC_TO_HTTP, build_document
from gateway.protoindex import ProtoIndex

PROTOS = Path(__file__).parent / "protos"


@pytest.fixture(scope="module")
def library_set(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pb2.FileDescriptorSet:
    out = tmp_path_factory.mktemp("library") / "library.pb"
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"-I{sysconfig.get_paths()['purelib']}",
            f"-I{Path(protoc.__file__).parent / '_proto'}",
            f"--descriptor_set_out={out}",
            "--include_imports",
            "--include_source_info",
            "example/v1/library.proto",
        ]
    )
    assert code == 0
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


@pytest.fixture(scope="module")
def library(library_set: descriptor_pb2.FileDescriptorSet) -> dict[str, Any]:
    return build_document(ProtoIndex.from_file_set(library_set), version="1.0")


def _params(operation: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in operation["parameters"] if p["in"] == where}


def _body_schema(operation: dict[str, Any]) -> dict[str, Any]:
    return dict(operation["requestBody"]["content"]["application/json"]["schema"])


def _ok_schema(operation: dict[str, Any], media: str = "application/json") -> dict[str, Any]:
    return dict(operation["responses"]["200"]["content"][media]["schema"])


def test_library_document_is_valid_openapi(library: dict[str, Any]) -> None:
    validate(library)


def test_every_binding_is_an_operation_and_unbound_methods_are_not(library: dict[str, Any]) -> None:
    operations = {
        (verb.upper(), path): op["operationId"]
        for path, ops in library["paths"].items()
        for verb, op in ops.items()
    }
    assert operations == {
        ("POST", "/v1/shelves/{shelf}/books"): "LibraryService_CreateBook",
        ("PATCH", "/v1/{book.name}"): "LibraryService_UpdateBook",
        ("GET", "/v1/shelves/{shelf}/books"): "LibraryService_ListBooks",
        ("GET", "/v1/books"): "LibraryService_ListBooks2",
        ("POST", "/v1/books/{id}:move"): "LibraryService_MoveBook",
        ("GET", "/v1/books/{id}/title"): "LibraryService_GetBookTitle",
        ("GET", "/v1/books/{id}/watch"): "LibraryService_WatchBook",
        ("GET", "/v1/books/{id}"): "LibraryService_GetBook",
        # /v1/books/{book_id} has the shape of /v1/books/{id}, the same path to OpenAPI: it takes that name.
        ("DELETE", "/v1/books/{id}"): "LibraryService_DeleteBook",
    }
    assert library["tags"] == [{"name": "LibraryService", "description": "Books on shelves."}]


def test_body_field_binding_takes_path_then_body_and_leaves_the_rest_to_the_query(library: dict[str, Any]) -> None:
    create = library["paths"]["/v1/shelves/{shelf}/books"]["post"]
    assert set(_params(create, "path")) == {"shelf"}
    assert set(_params(create, "query")) == {"requestId"}
    assert _params(create, "query")["requestId"]["description"] == "Makes retries safe."
    assert create["requestBody"]["required"] is True
    assert _body_schema(create) == {"$ref": "#/components/schemas/Book"}
    assert create["summary"] == "Puts a book on a shelf"
    assert create["description"].startswith("Puts a book on a shelf. Second sentence.")


def test_nested_path_variable_with_a_pattern(library: dict[str, Any]) -> None:
    update = library["paths"]["/v1/{book.name}"]["patch"]
    (name,) = _params(update, "path").values()
    assert name["name"] == "book.name" and name["required"] is True
    assert "shelves/*/books/*" in name["description"]
    assert "Resource name" in name["description"]
    assert _params(update, "query")["updateMask"]["schema"]["type"] == "string"


def test_get_flattens_message_fields_into_dotted_query_parameters(library: dict[str, Any]) -> None:
    by_shelf = _params(library["paths"]["/v1/shelves/{shelf}/books"]["get"], "query")
    # Maps cannot be query parameters; a message seen on the way down is not flattened again.
    assert set(by_shelf) == {"pageSize", "filter.author", "filter.since", "genres"}
    assert by_shelf["pageSize"]["schema"]["format"] == "int32"
    assert by_shelf["filter.since"]["schema"]["format"] == "date-time"
    assert by_shelf["genres"]["schema"] == {"type": "array", "items": {"$ref": "#/components/schemas/Genre"}}
    assert by_shelf["genres"]["explode"] is True
    every = library["paths"]["/v1/books"]["get"]
    assert set(_params(every, "query")) == {"shelf", "pageSize", "filter.author", "filter.since", "genres"}
    assert not _params(every, "path")


def test_body_star_takes_every_field_not_in_the_path(library: dict[str, Any]) -> None:
    move = library["paths"]["/v1/books/{id}:move"]["post"]
    assert not _params(move, "query")
    assert _body_schema(move) == {"$ref": "#/components/schemas/LibraryService.MoveBookBody"}
    body = library["components"]["schemas"]["LibraryService.MoveBookBody"]
    assert set(body["properties"]) == {"shelf"}
    assert body["required"] == ["shelf"]
    assert body["properties"]["shelf"]["description"] == "Where it goes."
    assert move["requestBody"]["required"] is True


def test_response_body_streams_and_empty(library: dict[str, Any]) -> None:
    assert _ok_schema(library["paths"]["/v1/books/{id}/title"]["get"]) == {"type": "string"}
    watch = library["paths"]["/v1/books/{id}/watch"]["get"]
    assert _ok_schema(watch, "application/x-ndjson") == {"$ref": "#/components/schemas/Book"}
    assert "newline-delimited JSON" in watch["description"]
    delete = library["paths"]["/v1/books/{id}"]["delete"]
    assert _ok_schema(delete) == {"type": "object"}
    assert "Sets the request's `book_id`" in _params(delete, "path")["id"]["description"]


def test_message_schema_follows_the_proto3_json_mapping(library: dict[str, Any]) -> None:
    book = library["components"]["schemas"]["Book"]
    props = book["properties"]
    assert book["description"].startswith("A book.")
    assert book["required"] == ["title"]
    assert list(props)[:5] == ["name", "title", "pages", "createTime", "readTime"]
    assert props["pages"] == {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
    assert props["createTime"]["format"] == "date-time" and props["createTime"]["readOnly"] is True
    assert props["readTime"]["pattern"].endswith("s$")
    assert props["ratings"]["additionalProperties"]["format"] == "int32"
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert props["genre"] == {"$ref": "#/components/schemas/Genre"}
    assert props["subtitle"] == {"type": "string", "nullable": True}
    assert props["extra"]["type"] == "object"
    assert props["sequel"] == {"$ref": "#/components/schemas/Book"}
    assert props["cover"]["format"] == "byte"
    assert props["copies"]["minimum"] == 0 and props["copies"]["maximum"] == 2**32 - 1
    assert props["secret"]["writeOnly"] is True
    # A oneof is documented on its members and listed; proto3 `optional` is not a oneof.
    assert book["x-oneof"] == {"format": ["paper", "ebook"]}
    assert props["paper"]["allOf"] == [{"$ref": "#/components/schemas/Paper"}]
    assert "`paper`, `ebook`" in props["paper"]["description"]
    assert "oneof" not in props["isbn"].get("description", "")


def test_enums_are_names_with_value_comments(library: dict[str, Any]) -> None:
    genre = library["components"]["schemas"]["Genre"]
    assert genre["type"] == "string"
    assert genre["enum"] == ["GENRE_UNSPECIFIED", "FICTION", "FACT"]
    assert "What a book is about." in genre["description"]
    assert "- `FICTION`: Made up." in genre["description"]


def test_a_route_bound_twice_is_refused(library_set: descriptor_pb2.FileDescriptorSet) -> None:
    conflicting = descriptor_pb2.FileDescriptorSet()
    conflicting.CopyFrom(library_set)
    (library_file,) = (f for f in conflicting.file if f.name == "example/v1/library.proto")
    methods = {m.name: m for m in library_file.service[0].method}
    rule = methods["Internal"].options.Extensions[annotations_pb2.http]
    rule.get = "/v1/books/{id}/title"
    with pytest.raises(ValueError, match="bound twice"):
        build_document(ProtoIndex.from_file_set(conflicting))


def test_generation_is_deterministic(library_set: descriptor_pb2.FileDescriptorSet) -> None:
    first = json.dumps(build_document(ProtoIndex.from_file_set(library_set), version="1"))
    second = json.dumps(build_document(ProtoIndex.from_file_set(library_set), version="1"))
    assert first == second


@pytest.fixture(scope="module")
def taskmesh_doc() -> dict[str, Any]:
    return build_document(ProtoIndex.load(DESCRIPTOR_SET))


def test_taskmesh_document_is_valid_openapi(taskmesh_doc: dict[str, Any]) -> None:
    validate(taskmesh_doc)


def test_login_is_public_and_everything_else_needs_a_bearer_token(taskmesh_doc: dict[str, Any]) -> None:
    assert taskmesh_doc["security"] == [{"bearerAuth": []}]
    scheme = taskmesh_doc["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    login = taskmesh_doc["paths"]["/api/auth/login"]["post"]
    assert login["security"] == []
    assert "403" not in login["responses"]
    assert "accessToken" in login["description"]
    others = [op for ops in taskmesh_doc["paths"].values() for op in ops.values() if op is not login]
    assert others and all("security" not in op and "403" in op["responses"] for op in others)
    create = taskmesh_doc["paths"]["/api/jobs"]["post"]
    assert "Roles: ADMIN, OPERATOR." in create["description"]


def test_errors_are_documented_with_envoys_status_mapping(taskmesh_doc: dict[str, Any]) -> None:
    status = taskmesh_doc["components"]["schemas"]["google.rpc.Status"]
    assert set(status["properties"]) == {"code", "message", "details"}
    get_job = taskmesh_doc["paths"]["/api/jobs/{id}"]["get"]
    assert set(get_job["responses"]) == {"200", "400", "401", "403", "404", "default"}
    assert dict(GRPC_TO_HTTP_BY_NAME)["FAILED_PRECONDITION"] == 400
    assert "FAILED_PRECONDITION (9)" in taskmesh_doc["info"]["description"]


GRPC_TO_HTTP_BY_NAME = [(name, status) for _, name, status in GRPC_TO_HTTP]
