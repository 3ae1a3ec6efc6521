"""An in-memory Taskmesh (JobService + AuthService) on a real in-process gRPC server: the seam
the client and CLI unit tests run against. It checks bearer tokens like the real server, keeps
a log of calls, and fails calls on demand (`fail`) to exercise retries and error mapping."""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict, deque
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.empty_pb2 import Empty
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from taskmesh.v1 import (
    auth_service_pb2,
    auth_service_pb2_grpc,
    job_pb2,
    job_service_pb2,
    job_service_pb2_grpc,
    run_pb2,
)

TERMINAL = {run_pb2.Run.SUCCEEDED, run_pb2.Run.FAILED, run_pb2.Run.CANCELLED}


@dataclass
class Call:
    method: str
    request: Message
    token: str | None


@dataclass
class FakeState:
    users: dict[str, tuple[str, int]] = field(default_factory=lambda: {"admin": ("admin", auth_service_pb2.ADMIN)})
    tokens: set[str] = field(default_factory=set)
    logins: int = 0
    expires_in: int = 3600
    jobs: dict[str, job_pb2.Job] = field(default_factory=dict)
    runs: dict[str, run_pb2.Run] = field(default_factory=dict)
    runs_by_key: dict[tuple[str, str], str] = field(default_factory=dict)
    logs: dict[str, list[run_pb2.LogLine]] = field(default_factory=dict)
    skipped: dict[str, list[job_service_pb2.SkippedSlot]] = field(default_factory=dict)
    truncated: dict[str, list[int]] = field(default_factory=dict)  # run id -> attempts whose logs hit the cap
    workers: list[job_service_pb2.Worker] = field(default_factory=list)
    # WatchRun scripts: per run, a list of RunEvent or grpc.StatusCode (abort there).
    watch_scripts: dict[str, deque[list[Any]]] = field(default_factory=lambda: defaultdict(deque))
    # Codes to fail the next calls of a method with, in order.
    failures: dict[str, deque[grpc.StatusCode]] = field(default_factory=lambda: defaultdict(deque))
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def now() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


class Guard:
    def __init__(self, state: FakeState) -> None:
        self.state = state

    def enter(self, method: str, request: Message, context: Any, public: bool = False) -> None:
        metadata = dict(context.invocation_metadata())
        header = metadata.get("authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
        with self.state.lock:
            self.state.calls.append(Call(method, request, token))
            queued = self.state.failures.get(method)
            failure = queued.popleft() if queued else None
        if failure is not None:
            context.abort(failure, f"injected {failure.name.lower()}")
        if not public and token not in self.state.tokens:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "the access token is invalid")


class FakeAuth(auth_service_pb2_grpc.AuthServiceServicer):
    def __init__(self, state: FakeState, guard: Guard) -> None:
        self.s, self.guard = state, guard

    def Login(self, request: Any, context: Any) -> auth_service_pb2.LoginResponse:
        self.guard.enter("Login", request, context, public=True)
        user = self.s.users.get(request.username)
        if user is None or user[0] != request.password:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "wrong username or password")
        with self.s.lock:
            self.s.logins += 1
            token = f"token-{self.s.logins}"
            self.s.tokens.add(token)
        return auth_service_pb2.LoginResponse(
            access_token=token, token_type="Bearer", expires_in=self.s.expires_in
        )

    def CreateUser(self, request: Any, context: Any) -> auth_service_pb2.User:
        self.guard.enter("CreateUser", request, context)
        self.s.users[request.username] = (request.password, request.role)
        return auth_service_pb2.User(username=request.username, role=request.role, create_time=now())

    def ListUsers(self, request: Any, context: Any) -> auth_service_pb2.ListUsersResponse:
        self.guard.enter("ListUsers", request, context)
        users = [
            auth_service_pb2.User(username=name, role=role) for name, (_, role) in sorted(self.s.users.items())
        ]
        return auth_service_pb2.ListUsersResponse(users=users)

    def DeleteUser(self, request: Any, context: Any) -> Empty:
        self.guard.enter("DeleteUser", request, context)
        if self.s.users.pop(request.username, None) is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"user {request.username} not found")
        return Empty()


class FakeJobs(job_service_pb2_grpc.JobServiceServicer):
    def __init__(self, state: FakeState, guard: Guard) -> None:
        self.s, self.guard = state, guard

    def _job(self, job_id: str, context: Any) -> job_pb2.Job:
        if job_id not in self.s.jobs:
            context.abort(grpc.StatusCode.NOT_FOUND, f"job {job_id} not found")
        return self.s.jobs[job_id]

    def _run(self, run_id: str, context: Any) -> run_pb2.Run:
        if run_id not in self.s.runs:
            context.abort(grpc.StatusCode.NOT_FOUND, f"run {run_id} not found")
        return self.s.runs[run_id]

    def CreateJob(self, request: Any, context: Any) -> job_pb2.Job:
        self.guard.enter("CreateJob", request, context)
        job = job_pb2.Job()
        job.CopyFrom(request.job)
        if not job.name:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "job.name: is required")
        if not job.HasField("executor"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "job.executor: is required")
        if any(j.name == job.name for j in self.s.jobs.values()):
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"a job named {job.name!r} already exists")
        job.id = str(uuid.uuid4())
        job.create_time.CopyFrom(now())
        job.update_time.CopyFrom(job.create_time)
        self.s.jobs[job.id] = job
        return job

    def GetJob(self, request: Any, context: Any) -> job_pb2.Job:
        self.guard.enter("GetJob", request, context)
        return self._job(request.id, context)

    def ListJobs(self, request: Any, context: Any) -> job_service_pb2.ListJobsResponse:
        self.guard.enter("ListJobs", request, context)
        jobs = [j for j in self.s.jobs.values() if _matches(j, request.filter)]
        page, token = _paginate(jobs, request.page_size, request.page_token)
        return job_service_pb2.ListJobsResponse(jobs=page, next_page_token=token)

    def UpdateJob(self, request: Any, context: Any) -> job_pb2.Job:
        self.guard.enter("UpdateJob", request, context)
        job = self._job(request.job.id, context)
        for path in request.update_mask.paths:
            job.ClearField(path)
            if path == "labels":
                job.labels.update(request.job.labels)
            elif request.job.DESCRIPTOR.fields_by_name[path].message_type is not None:
                if request.job.HasField(path):
                    getattr(job, path).CopyFrom(getattr(request.job, path))
            else:
                setattr(job, path, getattr(request.job, path))
        job.update_time.CopyFrom(now())
        return job

    def DeleteJob(self, request: Any, context: Any) -> Empty:
        self.guard.enter("DeleteJob", request, context)
        self._job(request.id, context)
        del self.s.jobs[request.id]
        return Empty()

    def TriggerJob(self, request: Any, context: Any) -> run_pb2.Run:
        self.guard.enter("TriggerJob", request, context)
        job = self._job(request.id, context)
        key = (job.id, request.idempotency_key)
        if request.idempotency_key and key in self.s.runs_by_key:
            return self.s.runs[self.s.runs_by_key[key]]
        run = self.add_run(job, run_pb2.Run.QUEUED, idempotency_key=request.idempotency_key)
        if request.idempotency_key:
            self.s.runs_by_key[key] = run.id
        return run

    def BatchTriggerJobs(self, request: Any, context: Any) -> job_service_pb2.BatchTriggerJobsResponse:
        self.guard.enter("BatchTriggerJobs", request, context)
        jobs = [self._job(r.id, context) for r in request.requests]
        return job_service_pb2.BatchTriggerJobsResponse(runs=[self.add_run(j, run_pb2.Run.QUEUED) for j in jobs])

    def add_run(self, job: job_pb2.Job, state: int, **fields: Any) -> run_pb2.Run:
        run = run_pb2.Run(
            id=str(uuid.uuid4()),
            job_id=job.id,
            job_name=job.name,
            state=state,
            attempt=1,
            trigger=run_pb2.Run.MANUAL,
            queue_time=now(),
            **fields,
        )
        self.s.runs[run.id] = run
        return run

    def GetJobStatus(self, request: Any, context: Any) -> job_service_pb2.JobStatus:
        self.guard.enter("GetJobStatus", request, context)
        job = self._job(request.id, context)
        status = job_service_pb2.JobStatus(job_id=job.id, job_name=job.name)
        runs = [r for r in self.s.runs.values() if r.job_id == job.id]
        if runs:
            status.state = runs[-1].state
            status.last_run.CopyFrom(runs[-1])
        return status

    def ListRuns(self, request: Any, context: Any) -> job_service_pb2.ListRunsResponse:
        self.guard.enter("ListRuns", request, context)
        if request.job_id:
            self._job(request.job_id, context)
        runs = [r for r in reversed(self.s.runs.values()) if not request.job_id or r.job_id == request.job_id]
        if request.filter:
            wanted = request.filter.removeprefix("state=")
            runs = [r for r in runs if run_pb2.Run.State.Name(r.state) == wanted]
        page, token = _paginate(runs, request.page_size, request.page_token)
        return job_service_pb2.ListRunsResponse(runs=page, next_page_token=token)

    def GetRun(self, request: Any, context: Any) -> run_pb2.Run:
        self.guard.enter("GetRun", request, context)
        return self._run(request.id, context)

    def PauseJob(self, request: Any, context: Any) -> job_pb2.Job:
        self.guard.enter("PauseJob", request, context)
        job = self._job(request.id, context)
        job.paused = True
        return job

    def ResumeJob(self, request: Any, context: Any) -> job_pb2.Job:
        self.guard.enter("ResumeJob", request, context)
        job = self._job(request.id, context)
        job.paused = False
        return job

    def ListSkippedSlots(self, request: Any, context: Any) -> job_service_pb2.ListSkippedSlotsResponse:
        self.guard.enter("ListSkippedSlots", request, context)
        self._job(request.job_id, context)
        page, token = _paginate(self.s.skipped.get(request.job_id, []), request.page_size, request.page_token)
        return job_service_pb2.ListSkippedSlotsResponse(skipped_slots=page, next_page_token=token)

    def CancelRun(self, request: Any, context: Any) -> run_pb2.Run:
        self.guard.enter("CancelRun", request, context)
        run = self._run(request.id, context)
        if run.state in TERMINAL:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"run {run.id} has already finished")
        run.state = run_pb2.Run.CANCELLED
        run.cancel_time.CopyFrom(now())
        return run

    def RetryRun(self, request: Any, context: Any) -> run_pb2.Run:
        self.guard.enter("RetryRun", request, context)
        old = self._run(request.id, context)
        return self.add_run(self.s.jobs[old.job_id], run_pb2.Run.QUEUED, retried_from_run_id=old.id)

    def WatchRun(self, request: Any, context: Any) -> Iterator[job_service_pb2.RunEvent]:
        self.guard.enter("WatchRun", request, context)
        self._run(request.id, context)
        scripts = self.s.watch_scripts[request.id]
        script = scripts.popleft() if scripts else []
        for item in script:
            if isinstance(item, grpc.StatusCode):
                context.abort(item, f"injected {item.name.lower()}")
            yield item

    def ListRunLogs(self, request: Any, context: Any) -> job_service_pb2.ListRunLogsResponse:
        self.guard.enter("ListRunLogs", request, context)
        self._run(request.id, context)
        lines = [
            line
            for line in self.s.logs.get(request.id, [])
            if not request.attempt or line.attempt == request.attempt
        ]
        page, token = _paginate(lines, request.page_size or 1000, request.page_token)
        truncated = [a for a in self.s.truncated.get(request.id, []) if request.attempt in (0, a)]
        return job_service_pb2.ListRunLogsResponse(lines=page, truncated_attempts=truncated, next_page_token=token)

    def ListWorkers(self, request: Any, context: Any) -> job_service_pb2.ListWorkersResponse:
        self.guard.enter("ListWorkers", request, context)
        workers = [w for w in self.s.workers if not request.pool or request.pool in w.pools]
        return job_service_pb2.ListWorkersResponse(workers=workers)


def _matches(job: job_pb2.Job, text: str) -> bool:
    """The subset of the filter language the tests use: name="x" and labels.k=v, joined by AND."""
    for term in filter(None, (t.strip() for t in text.split(" AND "))):
        key, _, value = term.partition("=")
        value = value.strip('"')
        if key == "name" and job.name != value:
            return False
        if key.startswith("labels.") and job.labels.get(key.removeprefix("labels.")) != value:
            return False
    return True


def _paginate(items: list[Any], page_size: int, token: str) -> tuple[list[Any], str]:
    size = page_size or 50
    start = int(token or 0)
    end = start + size
    return items[start:end], str(end) if end < len(items) else ""


class FakeTaskmesh:
    """The running fake: `address`, `state`, and helpers to set scenes up."""

    def __init__(self) -> None:
        self.state = FakeState()
        guard = Guard(self.state)
        self.jobs = FakeJobs(self.state, guard)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        job_service_pb2_grpc.add_JobServiceServicer_to_server(self.jobs, self.server)
        auth_service_pb2_grpc.add_AuthServiceServicer_to_server(FakeAuth(self.state, guard), self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{port}"

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop(None)

    def token(self) -> str:
        """A valid token, as Login would issue."""
        token = f"given-{uuid.uuid4().hex[:6]}"
        self.state.tokens.add(token)
        return token

    def revoke_tokens(self) -> None:
        self.state.tokens.clear()

    def fail(self, method: str, *codes: grpc.StatusCode) -> None:
        self.state.failures[method].extend(codes)

    def calls(self, method: str) -> list[Call]:
        return [c for c in self.state.calls if c.method == method]

    def add_job(self, name: str, **fields: Any) -> job_pb2.Job:
        job = job_pb2.Job(
            id=str(uuid.uuid4()), name=name, executor=job_pb2.Executor(noop=job_pb2.NoopExecutor()), **fields
        )
        job.create_time.CopyFrom(now())
        self.state.jobs[job.id] = job
        return job

    def add_run(self, job: job_pb2.Job, state: int = run_pb2.Run.SUCCEEDED, **fields: Any) -> run_pb2.Run:
        return self.jobs.add_run(job, state, **fields)

    def script_watch(self, run_id: str, *items: Any) -> None:
        self.state.watch_scripts[run_id].append(list(items))
