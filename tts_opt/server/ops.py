"""Operations routes: liveness, readiness, Prometheus metrics, and reloading the artifacts.

`/health`, `/ready` and `/metrics` are open (probes and scrapers carry no API key);
`/admin/reload` needs a key like the API. SIGHUP reloads too (see `tts_opt.cli.serve_command`).
"""

from __future__ import annotations

from litestar import Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.types import Guard
from prometheus_client import CONTENT_TYPE_LATEST

from tts_opt.server.context import ServerContext
from tts_opt.server.errors import APIError
from tts_opt.server.profiles import ProfileError


def ops_routes(ctx: ServerContext, guards: list[Guard]) -> list[HTTPRouteHandler]:
    @get("/health")
    async def health() -> dict[str, str]:
        """The process serves HTTP (liveness)."""
        return {"status": "ok"}

    @get("/ready")
    async def ready() -> Response[dict[str, str]]:
        """The engines are loaded and the profiles bound to them (readiness)."""
        if ctx.registry.ready:
            return Response({"status": "ready"})
        return Response({"status": "loading"}, status_code=503)

    @get("/metrics")
    async def metrics() -> Response[bytes]:
        return Response(ctx.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @post("/admin/reload", status_code=200, guards=guards)
    async def reload() -> dict[str, list[str]]:
        """Re-read the artifact directory; on a bad artifact nothing changes (400 names it)."""
        try:
            profiles = ctx.registry.reload()
        except ProfileError as exc:
            raise APIError(400, str(exc), code="invalid_artifact") from exc
        return {"profiles": sorted(profiles.profiles)}

    return [health, ready, metrics, reload]
