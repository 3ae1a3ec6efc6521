"""A trigger's parameters, merged over the job's defaults and validated against its schema, with
the job's compiled validator kept per job version, so the trigger path reads the job (one
batched query) only when it has not seen this version of it. A job with a concurrency limit
gets its run's key rendered here too (taskmesh.flow_policy.trigger_keys), from the same version.

Correctness never depends on the cache: every run request carries the version (the job's
update_time) its parameters were checked at, and CREATE_RUNS creates nothing for a job changed
since (taskmesh.db.runs); the caller then refreshes the job and checks again (api_server.runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from taskmesh import flow_policy, parameters
from taskmesh.ids import new_id
from taskmesh.records import Json, ParameterPolicy, RunRequest

MAX_CACHED_JOBS = 10_000


class PolicyStore(Protocol):
    """taskmesh.db.jobs.JobRepository."""

    async def parameter_policies(self, job_ids: set[str]) -> dict[str, ParameterPolicy]: ...


@dataclass(frozen=True)
class TriggerInput:
    job_id: str
    idempotency_key: str | None
    parameters: Json | None  # as given (taskmesh.parameters.from_struct), None when none
    field: str = "parameters"  # how errors name them, e.g. "requests[3].parameters"
    priority: int | None = None  # flow control: this run's priority instead of the job's


@dataclass(frozen=True)
class _Compiled:
    version: object  # the job's update_time
    defaults: Json | None
    validator: parameters.CompiledSchema | None
    job_name: str
    flow: Json | None  # the job's limits (None: it has none)


class ParameterResolver:
    def __init__(self, store: PolicyStore, max_jobs: int = MAX_CACHED_JOBS) -> None:
        self._store = store
        self._max_jobs = max_jobs
        self._jobs: dict[str, _Compiled] = {}
        self.loads = 0  # queries made (tests read them)
        self.compiled = 0  # validators compiled

    async def requests(
        self, inputs: Sequence[TriggerInput], refresh: frozenset[str] = frozenset()
    ) -> list[RunRequest]:
        """One run request per input, in order; InvalidArgument (naming the input's field and
        the JSON path) for the first input whose parameters are refused. Jobs in `refresh` are
        read again. An unknown job gets a request without version (it creates nothing)."""
        missing = {i.job_id for i in inputs if i.job_id not in self._jobs} | set(refresh)
        if missing:
            await self._load(missing)
        return [self._request(i) for i in inputs]

    def version(self, job_id: str) -> object | None:
        known = self._jobs.get(job_id)
        return None if known is None else known.version

    def _request(self, given: TriggerInput) -> RunRequest:
        compiled = self._jobs.get(given.job_id)
        if compiled is None:
            return RunRequest(new_id(), given.job_id, given.idempotency_key, priority=given.priority)
        merged = parameters.merged(compiled.defaults, given.parameters) if given.parameters else compiled.defaults
        text = parameters.bounded(merged or {}, given.field) if given.parameters else None
        parameters.validate(compiled.validator, merged or {}, given.field)
        run_id = new_id()
        return RunRequest(
            run_id,
            given.job_id,
            given.idempotency_key,
            parameters=merged or None,
            parameters_json=text if merged else None,
            job_version=compiled.version,  # type: ignore[arg-type]
            priority=given.priority,
            flow_keys=_trigger_keys(compiled, run_id, given.job_id, merged),
        )

    async def _load(self, job_ids: set[str]) -> None:
        self.loads += 1
        policies = await self._store.parameter_policies(job_ids)
        if len(self._jobs) + len(policies) > self._max_jobs:
            self._jobs.clear()
        for job_id in job_ids - policies.keys():  # deleted
            self._jobs.pop(job_id, None)
        for job_id, policy in policies.items():
            known = self._jobs.get(job_id)
            if known is not None and known.version == policy.version:
                continue  # compiled already
            validator = parameters.compile_schema(policy.schema) if policy.schema else None
            self._jobs[job_id] = _Compiled(
                policy.version, policy.defaults or None, validator, policy.job_name, policy.flow
            )
            self.compiled += 1


def _trigger_keys(
    compiled: _Compiled, run_id: str, job_id: str, merged: Json | None
) -> flow_policy.FlowKeys | None:
    if compiled.flow is None:
        return None
    context = flow_policy.RunContext(
        run_id=run_id, attempt=1, job_id=job_id, job_name=compiled.job_name, params=merged
    )
    return flow_policy.trigger_keys(compiled.flow, context)
