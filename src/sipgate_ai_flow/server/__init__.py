"""Serving an assistant over HTTP and WebSocket (ASGI, Starlette)."""

from sipgate_ai_flow.server.app import create_app, mount

__all__ = ["create_app", "mount"]
