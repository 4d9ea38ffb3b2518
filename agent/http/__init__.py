"""The HTTP API: quart-trio routes (``app``) over one facade (``api.AgentAPI``)."""

from .api import AgentAPI, ApiError
from .app import create_app

__all__ = ["AgentAPI", "ApiError", "create_app"]
