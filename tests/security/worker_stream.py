"""A raw WorkerService/Connect stream, as anybody holding a worker token can open one."""

from __future__ import annotations

import queue
from types import TracebackType

import grpc

from taskmesh.v1 import run_pb2, worker_service_pb2_grpc
from taskmesh.v1 import worker_service_pb2 as pb

STREAM_DEADLINE_SECONDS = 60


class RawStream:
    def __init__(self, address: str, token: str, hello: pb.Hello) -> None:
        self._requests: queue.Queue[pb.ConnectRequest | None] = queue.Queue()
        self._requests.put(pb.ConnectRequest(hello=hello))
        self._channel = grpc.insecure_channel(address)
        stub = worker_service_pb2_grpc.WorkerServiceStub(self._channel)
        self._call = stub.Connect(
            iter(self._requests.get, None),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=STREAM_DEADLINE_SECONDS,
        )

    def welcome(self) -> pb.Welcome:
        """The first answer; raises grpc.RpcError when the stream is refused."""
        return self.next_of("welcome").welcome

    def next_of(self, kind: str) -> pb.ConnectResponse:
        """The next answer of that kind (others, such as cancellations, are skipped)."""
        for response in self._call:
            if response.WhichOneof("message") == kind:
                return response
        raise AssertionError(f"the stream ended before a {kind} answer")

    def claim(self, ref: pb.AttemptRef) -> pb.Claim:
        self._requests.put(pb.ConnectRequest(claim=pb.ClaimRuns(attempts=[ref])))
        return self.next_of("claimed").claimed.claims[0]

    def report(self, outcome: pb.Outcome) -> pb.OutcomeAck:
        self._requests.put(pb.ConnectRequest(report=pb.ReportOutcomes(outcomes=[outcome])))
        return self.next_of("recorded").recorded.acks[0]

    def heartbeat(self, ref: pb.AttemptRef) -> pb.HeartbeatResult:
        self._requests.put(pb.ConnectRequest(heartbeat=pb.Heartbeat(attempts=[ref])))
        return self.next_of("heartbeat").heartbeat

    def log(self, ref: pb.AttemptRef, text: str) -> None:
        line = run_pb2.LogLine(attempt=ref.attempt, text=text)
        line.time.GetCurrentTime()
        self._requests.put(
            pb.ConnectRequest(logs=pb.AppendLogs(attempts=[pb.AttemptLog(attempt=ref, lines=[line])]))
        )

    def close(self) -> None:
        self._requests.put(None)
        self._call.cancel()
        self._channel.close()

    def __enter__(self) -> RawStream:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def forged_success(ref: pb.AttemptRef) -> pb.Outcome:
    return pb.Outcome(
        attempt=ref,
        status=pb.Outcome.SUCCEEDED,
        result=run_pb2.RunResult(shell=run_pb2.ShellResult(exit_code=0, output_excerpt="forged")),
    )


def refusal(address: str, token: str, hello: pb.Hello) -> grpc.StatusCode:
    """The status a Connect with this Hello is refused with (fails if it is welcomed)."""
    with RawStream(address, token, hello) as stream:
        try:
            stream.welcome()
        except grpc.RpcError as error:
            return error.code()  # type: ignore[no-any-return]
    raise AssertionError(f"a stream saying {hello} was welcomed")
