"""Bearer API keys, as OpenAI clients send them; a missing or wrong key gets 401 in OpenAI's shape.

Keys are compared in constant time. With no keys configured the server is open (local use).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from tts_opt.server.errors import APIError


def api_key_guards(keys: Sequence[str]) -> list[Guard]:
    """Guards for the routes that need a key: none when no keys are configured."""
    if not keys:
        return []
    accepted = [key.encode() for key in keys]

    def require_api_key(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:
        scheme, _, token = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise APIError(
                401,
                "Missing API key: send it as 'Authorization: Bearer <key>'.",
                code="invalid_api_key",
            )
        given = token.strip().encode()
        if not any(hmac.compare_digest(given, key) for key in accepted):
            raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")

    return [require_api_key]
