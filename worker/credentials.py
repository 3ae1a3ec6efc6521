"""The worker's access token: obtained with Login and renewed before it expires."""

from __future__ import annotations

import time

from taskmesh.tls import ClientTls, aio_channel
from taskmesh.v1 import auth_service_pb2, auth_service_pb2_grpc

RENEW_MARGIN_SECONDS = 120


class TokenSource:
    def __init__(self, api_address: str, username: str, password: str, tls: ClientTls | None = None) -> None:
        self._api_address = api_address
        self._tls = tls
        self._username = username
        self._password = password
        self._token = ""
        self._expires_at = 0.0

    async def token(self) -> str:
        if time.monotonic() > self._expires_at - RENEW_MARGIN_SECONDS:
            await self._login()
        return self._token

    async def _login(self) -> None:
        async with aio_channel(self._api_address, self._tls) as channel:
            stub = auth_service_pb2_grpc.AuthServiceStub(channel)
            response = await stub.Login(
                auth_service_pb2.LoginRequest(username=self._username, password=self._password), timeout=10
            )
        self._token = response.access_token
        self._expires_at = time.monotonic() + response.expires_in
