"""Settings shared by the HTTP and WebSocket endpoints."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sipgate_ai_flow.assistant.assistant import Assistant

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_MAX_CALLS_PER_CONNECTION",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "Endpoint",
    "logger",
]

logger = logging.getLogger("sipgate_ai_flow.server")

# Events are small JSON documents; 1 MiB leaves room for long transcripts and unknown fields.
DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024
# The service opens a connection per call (D16); 10,000 idle ones cost about 220 MB of RSS.
DEFAULT_MAX_CONNECTIONS = 10_000
# One connection may carry several calls (D16), but not without bound.
DEFAULT_MAX_CALLS_PER_CONNECTION = 1_000
# A webhook body the service sends arrives at once; one still coming after this is a stalled client.
DEFAULT_BODY_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What a transport needs: the assistant, the secret, and the limits."""

    assistant: Assistant
    token: str | None
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_calls_per_connection: int = DEFAULT_MAX_CALLS_PER_CONNECTION
    body_timeout: float = DEFAULT_BODY_TIMEOUT
