"""The HTTP gateway: the runtime behind OpenAI- and Anthropic-compatible endpoints."""

from runtime.gateway.app import Gateway, build_app
from runtime.gateway.server import GatewayServer, open_gateway

__all__ = ["Gateway", "GatewayServer", "build_app", "open_gateway"]
