"""Operator-configured response headers (``http_api_response_headers``, agent-api.md 1.2).

Nomad sets the configured headers on every response of the API, errors included,
before the handler runs, so a header the handler sets itself (``Content-Type``)
wins over a configured one of the same name. The catch-all 404 for an unknown path
(1.1) is served outside that wrapper and carries none of them; ``create_app`` marks
that response with the attribute ``shoal_catch_all``.
"""

from __future__ import annotations

from typing import Any

from quart import Response
from quart_trio import QuartTrio

__all__ = ["register_header_hooks", "CATCH_ALL_ATTRIBUTE"]

CATCH_ALL_ATTRIBUTE = "shoal_catch_all"
"""Set to True on the catch-all 404 response: no configured headers there."""


def register_header_hooks(app: QuartTrio, api: Any) -> None:
    """Add ``api.config.http_api_response_headers`` to every response but the catch-all 404."""
    config = getattr(api, "config", None)
    headers = tuple(getattr(config, "http_api_response_headers", ()) or ())
    if not headers:
        return

    @app.after_request
    async def _add_headers(response: Response) -> Response:
        if getattr(response, CATCH_ALL_ATTRIBUTE, False):
            return response
        for name, value in headers:
            if name not in response.headers:
                response.headers[name] = value
        return response
