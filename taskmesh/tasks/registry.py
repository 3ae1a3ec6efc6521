"""TaskRegistry: task names -> functions, with what each function expects.

A task function takes up to two arguments, in any order: its parameters (annotated with a
pydantic model or a dataclass to have them validated into it; a Mapping, or no annotation, to
receive the JSON object as it is) and a TaskContext (annotated `TaskContext`, or named `ctx`).
It may be `async def` (run on the worker's event loop) or plain `def` (run in a thread pool);
`isolated=True` runs each attempt in a child process that is killed on timeout and cancel.
Its return value (JSON-able: dict, list, str, number, bool, None, or a pydantic model or
dataclass) is the run's output.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pydantic

from taskmesh.names import valid_task_name
from taskmesh.tasks.context import TaskContext
from taskmesh.tasks.errors import ParameterError

TaskFunction = Callable[..., Any]


@dataclass(frozen=True)
class TaskDefinition:
    name: str
    function: TaskFunction
    is_async: bool
    isolated: bool
    # The parameter model (pydantic model or dataclass), None when the function takes the raw
    # mapping; the argument names the function receives them and the context by.
    model: type[Any] | None
    params_argument: str | None
    context_argument: str | None

    def parse(self, params: Mapping[str, Any]) -> Any:
        """The parameters as the function takes them; ParameterError names the first bad field."""
        if self.model is None:
            return dict(params)
        try:
            return _adapter(self.model).validate_python(dict(params))
        except pydantic.ValidationError as error:
            first = error.errors()[0]
            path = ".".join(["parameters", *(str(part) for part in first["loc"])])
            raise ParameterError(path, first["msg"]) from None

    def arguments(self, params: Mapping[str, Any], context: TaskContext) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.params_argument is not None:
            kwargs[self.params_argument] = self.parse(params)
        if self.context_argument is not None:
            kwargs[self.context_argument] = context
        return kwargs

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of the parameters: a job's parameter_schema."""
        if self.model is None:
            return {"type": "object"}
        return _adapter(self.model).json_schema()


_ADAPTERS: dict[type[Any], pydantic.TypeAdapter[Any]] = {}


def _adapter(model: type[Any]) -> pydantic.TypeAdapter[Any]:
    """One adapter per model: building one costs about 300 us, more than a no-op task's run."""
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        adapter = _ADAPTERS[model] = pydantic.TypeAdapter(model)
    return adapter


class TaskRegistry:
    def __init__(self) -> None:
        self._tasks: dict[str, TaskDefinition] = {}

    def task(self, name: str, *, isolated: bool = False) -> Callable[[TaskFunction], TaskFunction]:
        """Register the decorated function as task `name`; the function itself is unchanged."""
        if not valid_task_name(name):
            raise ValueError(
                f"task name {name!r}: 1-128 letters, digits, '_', '.', '-', not starting with '.' or '-'"
            )

        def register(function: TaskFunction) -> TaskFunction:
            if name in self._tasks:
                raise ValueError(f"task {name!r} is already registered")
            self._tasks[name] = define(name, function, isolated=isolated)
            return function

        return register

    @property
    def names(self) -> list[str]:
        return sorted(self._tasks)

    def get(self, name: str) -> TaskDefinition | None:
        return self._tasks.get(name)

    def schemas(self) -> dict[str, dict[str, Any]]:
        return {name: self._tasks[name].schema() for name in self.names}


def define(name: str, function: TaskFunction, *, isolated: bool = False) -> TaskDefinition:
    hints = typing.get_type_hints(function)
    params_argument = context_argument = None
    model: type[Any] | None = None
    for parameter in inspect.signature(function).parameters.values():
        annotation = hints.get(parameter.name)
        if _is_context(annotation) or (annotation is None and parameter.name in ("ctx", "context")):
            context_argument = parameter.name
        elif params_argument is None:
            params_argument = parameter.name
            model = _model(annotation)
        else:
            raise TypeError(f"task {name!r}: takes (params, ctx) at most; unexpected argument {parameter.name!r}")
    return TaskDefinition(
        name=name,
        function=function,
        is_async=inspect.iscoroutinefunction(function),
        isolated=isolated,
        model=model,
        params_argument=params_argument,
        context_argument=context_argument,
    )


def _is_context(annotation: Any) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, TaskContext)


def _model(annotation: Any) -> type[Any] | None:
    if inspect.isclass(annotation) and (
        issubclass(annotation, pydantic.BaseModel) or dataclasses.is_dataclass(annotation)
    ):
        return annotation
    return None  # a mapping, Any or nothing: the JSON object as it is


def load_registry(spec: str) -> TaskRegistry:
    """`module:attribute` -> the TaskRegistry it names (what --tasks takes)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"--tasks {spec!r}: expected module:attribute, e.g. myapp.tasks:tasks")
    registry = getattr(importlib.import_module(module_name), attribute, None)
    if not isinstance(registry, TaskRegistry):
        raise ValueError(f"--tasks {spec!r}: {attribute} is not a taskmesh.tasks.TaskRegistry")
    return registry
