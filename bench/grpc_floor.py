"""The floor under the api_server's cost per TriggerJob: what grpc.aio itself costs per unary
call on this machine, with a servicer that does nothing but answer a constant Run.

Starts a bare gRPC server (uvloop, as the api_server runs; no interceptors, no database) in a
child process, calls it from this process with the benchmark's concurrency, and prints the
server's CPU microseconds per call:

  python -m bench.grpc_floor                     # 20,000 calls, 64 in flight
  python -m bench.grpc_floor --interceptors      # with the api_server's two interceptors
                                                 # wrapped around a method that needs no token
  python -m bench.grpc_floor --rate 200 --calls 4000   # open loop: one call every 5 ms, as
                                                 # bench.trigger_throughput --rate 200 sends them

The api_server's figure (bench.trigger_throughput) minus this one is what Taskmesh's own code
costs per call.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time
from typing import Any

from grpc import aio

from bench.common import cpu_seconds
from taskmesh.launcher import free_port
from taskmesh.v1 import job_service_pb2, job_service_pb2_grpc, run_pb2


class _ConstantJobs(job_service_pb2_grpc.JobServiceServicer):
    def __init__(self) -> None:
        self._run = run_pb2.Run(id="0" * 32, job_id="1" * 32, state=run_pb2.Run.QUEUED, attempt=1)

    async def TriggerJob(self, request: Any, context: Any) -> run_pb2.Run:
        return self._run


def _serve(port: int, interceptors: str, ready: Any) -> None:
    import uvloop

    from taskmesh.process import quiet_garbage_collector

    async def main() -> None:
        from taskmesh.rpc.telemetry import TelemetryInterceptor, _observed
        from taskmesh.rpc.wrapping import wrap_handler

        chain: list[aio.ServerInterceptor] = [TelemetryInterceptor()] if interceptors == "interceptor" else []
        server = aio.server(interceptors=chain)
        if interceptors == "wrapped":
            import grpc

            method = "/taskmesh.v1.JobService/TriggerJob"
            handler = grpc.unary_unary_rpc_method_handler(
                _ConstantJobs().TriggerJob,
                job_service_pb2.TriggerJobRequest.FromString,
                run_pb2.Run.SerializeToString,
            )
            wrapped = wrap_handler(handler, _observed(method))
            server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler("taskmesh.v1.JobService", {"TriggerJob": wrapped}),)
            )
        else:
            job_service_pb2_grpc.add_JobServiceServicer_to_server(_ConstantJobs(), server)  # type: ignore[no-untyped-call]
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        ready.set()
        await server.wait_for_termination()

    quiet_garbage_collector()
    uvloop.run(main())


async def _call_all(port: int, calls: int, concurrency: int) -> float:
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        request = job_service_pb2.TriggerJobRequest(id="1" * 32)
        await stub.TriggerJob(request)
        remaining = calls

        async def caller() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await stub.TriggerJob(request)

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        return time.perf_counter() - started


async def _call_at_rate(port: int, calls: int, rate: float) -> float:
    """One call every 1/rate seconds, each on its own (what a trickle of triggers costs: nothing
    is shared between calls, every one wakes the server up)."""
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        request = job_service_pb2.TriggerJobRequest(id="1" * 32)
        await stub.TriggerJob(request)
        loop = asyncio.get_running_loop()
        started = loop.time()
        pending = []
        for index in range(calls):
            await asyncio.sleep(max(0.0, started + index / rate - loop.time()))
            pending.append(asyncio.ensure_future(stub.TriggerJob(request)))
        await asyncio.gather(*pending)
        return loop.time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=float, default=0.0, help="open loop: calls per second (0: closed loop)")
    parser.add_argument(
        "--interceptors",
        choices=("none", "interceptor", "wrapped"),
        default="none",
        help="the telemetry behaviour as an interceptor, or wrapped around the handler once",
    )
    args = parser.parse_args()
    port = free_port()
    spawn = multiprocessing.get_context("spawn")
    ready = spawn.Event()
    server = spawn.Process(target=_serve, args=(port, args.interceptors, ready))
    server.start()
    try:
        ready.wait(30)
        assert server.pid is not None
        before = cpu_seconds(server.pid)
        calling = (
            _call_at_rate(port, args.calls, args.rate)
            if args.rate > 0
            else _call_all(port, args.calls, args.concurrency)
        )
        elapsed = asyncio.run(calling)
        used = cpu_seconds(server.pid) - before
    finally:
        server.terminate()
        server.join()
    shape = f"at {args.rate:g}/s" if args.rate > 0 else f"{args.concurrency} in flight"
    print(
        f"{args.calls} unary calls, {shape} (telemetry: {args.interceptors}): "
        f"{args.calls / elapsed:,.0f} calls/s, server CPU {used * 1e6 / args.calls:.0f} us per call"
    )


if __name__ == "__main__":
    main()
