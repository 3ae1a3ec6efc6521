"""The Python task SDK without a mesh: registry, context, parameter models, schemas, errors."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import BaseModel, Field

from taskmesh.tasks import NonRetryable, ParameterError, TaskContext, TaskRegistry, load_registry
from taskmesh.tasks.results import json_value


class Report(BaseModel):
    customer_id: int
    format: str = Field(default="pdf", pattern="^(pdf|csv)$")


@dataclasses.dataclass
class Point:
    x: float
    y: float = 0.0


def _registry() -> TaskRegistry:
    tasks = TaskRegistry()

    @tasks.task("reports.build")
    async def build(params: Report, ctx: TaskContext) -> dict[str, Any]:
        ctx.log(f"building {params.customer_id}")
        return {"customer": params.customer_id, "format": params.format}

    @tasks.task("points.norm")
    def norm(ctx: TaskContext, p: Point) -> float:  # any order
        return float((p.x**2 + p.y**2) ** 0.5)

    @tasks.task("raw")
    def raw(params: Mapping[str, Any]) -> Any:
        return dict(params)

    @tasks.task("bare")
    def bare() -> None:
        return None

    return tasks


def test_a_registered_task_is_the_function_itself_and_callable_with_a_test_context() -> None:
    tasks = _registry()
    assert tasks.names == ["bare", "points.norm", "raw", "reports.build"]
    build = tasks.get("reports.build")
    assert build is not None and build.is_async and not build.isolated
    ctx = TaskContext.for_testing({"customer_id": 42})
    result = asyncio.run(build.function(**build.arguments(ctx.params, ctx)))
    assert result == {"customer": 42, "format": "pdf"}
    assert ctx.logs == ["building 42"]
    norm = tasks.get("points.norm")
    assert norm is not None and not norm.is_async
    assert norm.function(**norm.arguments({"x": 3, "y": 4}, ctx)) == 5.0


def test_parameters_are_validated_into_the_model_naming_the_field() -> None:
    build = _registry().get("reports.build")
    assert build is not None
    with pytest.raises(ParameterError) as error:
        build.parse({"customer_id": "x"})
    assert error.value.path == "parameters.customer_id"
    assert str(error.value).startswith("parameters.customer_id: ")
    with pytest.raises(ParameterError, match=r"parameters\.format"):
        build.parse({"customer_id": 1, "format": "exe"})
    with pytest.raises(ParameterError, match=r"parameters\.customer_id"):
        build.parse({})
    assert isinstance(ParameterError("p", "m"), NonRetryable)  # never retried
    norm = _registry().get("points.norm")
    assert norm is not None
    with pytest.raises(ParameterError, match=r"parameters\.x"):
        norm.parse({"x": "far"})
    raw = _registry().get("raw")
    assert raw is not None and raw.parse({"a": [1]}) == {"a": [1]}


def test_the_parameter_schema_is_generated_from_the_model() -> None:
    schemas = _registry().schemas()
    report = schemas["reports.build"]
    assert report["type"] == "object" and report["required"] == ["customer_id"]
    assert report["properties"]["customer_id"]["type"] == "integer"
    assert schemas["points.norm"]["required"] == ["x"]
    assert schemas["raw"] == {"type": "object"} and schemas["bare"] == {"type": "object"}


def test_task_names_are_checked_and_unique() -> None:
    tasks = TaskRegistry()
    for bad in ("", "a b", ".x", "a/b"):
        with pytest.raises(ValueError, match="task name"):
            tasks.task(bad)
    tasks.task("t")(lambda: None)
    with pytest.raises(ValueError, match="already registered"):
        tasks.task("t")(lambda: None)
    with pytest.raises(TypeError, match="unexpected argument"):
        tasks.task("u")(lambda a, b, c: None)


def test_cancellation_is_visible_to_the_task() -> None:
    ctx = TaskContext.for_testing()
    assert not ctx.cancelled
    ctx.raise_if_cancelled()
    ctx.cancel()
    assert ctx.cancelled
    with pytest.raises(asyncio.CancelledError):
        ctx.raise_if_cancelled()


def test_return_values_become_json() -> None:
    assert json_value(Report(customer_id=1)) == {"customer_id": 1, "format": "pdf"}
    assert json_value(Point(1.0)) == {"x": 1.0, "y": 0.0}
    assert json_value({"a": (1, 2)}) == {"a": [1, 2]}
    assert json_value(float("nan")) is None  # as pydantic writes it: JSON has no NaN
    with pytest.raises((TypeError, ValueError)):
        json_value(object())


def test_load_registry_names_module_and_attribute() -> None:
    registry = load_registry("taskmesh.examples.tasks:tasks")
    assert "examples.greet" in registry.names
    with pytest.raises(ValueError, match="module:attribute"):
        load_registry("taskmesh.examples.tasks")
    with pytest.raises(ValueError, match=r"not a taskmesh\.tasks\.TaskRegistry"):
        load_registry("taskmesh.examples.tasks:log")


def test_the_example_tasks_run_without_a_mesh() -> None:
    from taskmesh.examples import tasks as examples

    ctx = TaskContext.for_testing({"name": "Ada", "times": 2})
    assert asyncio.run(examples.greet(examples.Greeting(name="Ada", times=2), ctx)) == {
        "greeting": "hello, Ada!",
        "count": 2,
    }
    with pytest.raises(NonRetryable):
        examples.flaky(examples.Flaky(permanent=True), TaskContext.for_testing())
