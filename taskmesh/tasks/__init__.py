"""The Python task SDK: functions registered by name, run by workers started with
`taskmesh-worker --tasks module:registry`.

    from taskmesh.tasks import TaskRegistry, TaskContext, NonRetryable
    tasks = TaskRegistry()

    @tasks.task("reports.build")
    async def build(params: ReportParams, ctx: TaskContext) -> dict: ...

A task is a plain function: test it by calling it with `TaskContext.for_testing()`.
"""

from taskmesh.tasks.context import TaskContext
from taskmesh.tasks.errors import NonRetryable, ParameterError
from taskmesh.tasks.registry import TaskDefinition, TaskRegistry, load_registry

__all__ = ["NonRetryable", "ParameterError", "TaskContext", "TaskDefinition", "TaskRegistry", "load_registry"]
