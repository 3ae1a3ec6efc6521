"""An httpx transport whose every connection obeys the egress policy (taskmesh/egress.py).

Shared by every process that makes requests to addresses users choose: the worker's http
executor and the scheduler's notification webhooks.

The network backend resolves the host itself, drops the addresses the policy denies, connects
to an allowed address by IP (httpcore still sends the name as Host and TLS SNI, and verifies the
certificate against it), then checks the socket's peer address once more before a byte is sent.
Nothing is resolved twice, so a name that resolves differently between a check and a connect
(DNS rebinding) gains nothing. Pooled connections stay bound to the address they were checked at.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import anyio
import httpcore
import httpx

from taskmesh.egress import Decision, EgressPolicy, IPAddress, decide, parse_address, policy_for
from taskmesh.settings import Settings

Resolver = Callable[[str, int], Awaitable[list[str]]]


class EgressDenied(Exception):
    """A connection the egress policy refuses; nothing was sent."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(str(decision))
        self.decision = decision


async def resolve(host: str, port: int) -> list[str]:
    """Every address the name `host` resolves to, in the resolver's order."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def local_addresses() -> list[IPAddress]:
    """This machine's own addresses, as far as its host name tells (a pod's IP in Kubernetes)."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return list(dict.fromkeys(parse_address(str(info[4][0])) for info in infos))


def worker_policy(settings: Settings) -> EgressPolicy:
    """The policy of this process's settings and this machine's addresses (worker, scheduler,
    api_server: each judges the same mesh endpoints)."""
    return policy_for(settings, local_addresses())


class GuardedBackend(httpcore.AsyncNetworkBackend):
    def __init__(
        self,
        policy: EgressPolicy,
        resolver: Resolver = resolve,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._policy = policy
        self._resolve = resolver
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                addresses = [host] if _is_literal(host) else await self._resolve(host, port)
        except TimeoutError as error:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from error
        except OSError as error:
            raise httpcore.ConnectError(f"cannot resolve {host}: {error}") from error
        decisions = [decide(self._policy, address, port) for address in addresses]
        allowed = [d.address for d in decisions if d.allowed]
        if not allowed:
            if not decisions:
                raise httpcore.ConnectError(f"{host} resolves to no address")
            raise EgressDenied(decisions[0])
        last: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in allowed:  # each checked address in turn, as a resolver-ordered fallback
            try:
                stream = await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as failure:
                last = failure
                continue
            await self._check_peer(stream)
            return stream
        assert last is not None
        raise last

    async def _check_peer(self, stream: httpcore.AsyncNetworkStream) -> None:
        peer = stream.get_extra_info("server_addr")
        decision = decide(self._policy, str(peer[0]), int(peer[1])) if peer else None
        if decision is None or not decision.allowed:
            await stream.aclose()
            raise EgressDenied(decision or Decision(False, "?", 0, "a connection without a peer address"))

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise EgressDenied(Decision(False, path, 0, "a Unix socket"))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _is_literal(host: str) -> bool:
    try:
        parse_address(host)
    except ValueError:
        return False
    return True


# httpcore's errors as httpx raises them, most specific first.
_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
)

_CORE_ERRORS = tuple(core for core, _ in _ERRORS)


def _httpx_error(error: Exception, request: httpx.Request) -> Exception:
    for core, public in _ERRORS:
        if isinstance(error, core):
            return public(str(error), request=request)  # type: ignore[call-arg]
    return error


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterator[bytes], request: httpx.Request, close: Callable[[], Awaitable[None]]):
        self._stream = stream
        self._request = request
        self._close = close

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except _CORE_ERRORS as error:
            raise _httpx_error(error, self._request) from error

    async def aclose(self) -> None:
        await self._close()


class GuardedTransport(httpx.AsyncBaseTransport):
    """httpx's transport contract over an httpcore pool on a GuardedBackend (no proxies, no
    Unix sockets: every connection goes where the policy says it may)."""

    def __init__(self, policy: EgressPolicy, resolver: Resolver = resolve, limits: httpx.Limits | None = None):
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy, resolver),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            response = await self._pool.handle_async_request(core_request)
        except _CORE_ERRORS as error:
            raise _httpx_error(error, request) from error
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.aiter_stream(), request, response.aclose),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()
