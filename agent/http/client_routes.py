"""Routes of the client half of an agent: ``/v1/agent/servers`` (agent-api.md 3.2).

The order of checks is Nomad's (``command/agent/agent_endpoint.go``,
``AgentServersRequest``): the method first (GET lists, PUT and POST replace,
anything else 405 "Invalid method"), then the client check (a server-only agent
answers 501 "Invalid method"), then for PUT/POST the ``address`` parameter
(400 "missing server address"), then the ACL check (GET agent:read, PUT/POST
agent:write; agent/http/auth.py). A PUT whose addresses all fail answers 400 with go-multierror's text.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from quart import Response, request
from quart_trio import QuartTrio

from ..join import multierror
from .api import ApiError
from .app import ALL_METHODS, empty_response, json_response
from .auth import require

__all__ = ["ClientFacade", "register_client_routes"]


class ClientFacade(Protocol):
    """What these routes need of ``AgentAPI``."""

    is_client: bool

    def client_servers(self) -> list[str]: ...

    async def set_client_servers(self, addresses: Sequence[str]) -> tuple[int, list[str]]: ...


def register_client_routes(app: QuartTrio, api: ClientFacade) -> None:
    """Add ``/v1/agent/servers``; registering twice on one app is a no-op."""
    if app.extensions.get("shoal.client_routes"):
        return
    app.extensions["shoal.client_routes"] = True

    @app.route("/v1/agent/servers", methods=ALL_METHODS)
    async def agent_servers() -> Response:
        if request.method == "GET":
            _require_client(api)
            await require(api, "agent:read")
            return json_response(sorted(api.client_servers()))
        if request.method in ("PUT", "POST"):
            _require_client(api)
            # Repeated parameters; a comma-separated list is one (unresolvable) address.
            addresses = request.args.getlist("address")
            if not addresses:
                raise ApiError(400, "missing server address")
            await require(api, "agent:write")     # after the address check, as Nomad
            num_kept, errors = await api.set_client_servers(addresses)
            if num_kept == 0:
                raise ApiError(400, multierror(errors) if errors else "no servers")
            return empty_response(200)
        raise ApiError(405, "Invalid method")


def _require_client(api: ClientFacade) -> None:
    if not api.is_client:
        raise ApiError(501, "Invalid method")
