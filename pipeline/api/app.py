"""The one ASGI app: the route table (`routes.py`) mounted behind the API's auth."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import msgspec
from starlette.applications import Starlette
from starlette.middleware import Middleware

from pipeline.api.auth import ApiAuthMiddleware, MediaAuth
from pipeline.api.credentials import ApiAuth, api_auth_enabled
from pipeline.api.guard import guard
from pipeline.api.openapi import openapi_document
from pipeline.api.routes import ROUTES
from pipeline.api.spec import mount
from pipeline.service import Service


def create_app(service: Service) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    api_auth = ApiAuth(service.settings)
    app = Starlette(
        routes=mount(ROUTES, guard),
        lifespan=lifespan,
        # Bearer auth on the event stream, the read/control API and the console pages, when
        # CALLSTREAM_API_TOKENS (or an API JWT issuer) is set; /media and /acs/* check their own.
        middleware=[
            Middleware(
                ApiAuthMiddleware,
                auth=api_auth,
                secure_cookie=(service.settings.public_url or "").startswith("https:"),
            )
        ],
    )
    app.state.service = service
    app.state.api_auth = api_auth
    app.state.media_auth = MediaAuth(service.settings)
    # Generated from the table just mounted, once: GET /openapi.json serves these bytes.
    app.state.openapi = msgspec.json.encode(openapi_document(api_auth_enabled(service.settings)))
    return app
