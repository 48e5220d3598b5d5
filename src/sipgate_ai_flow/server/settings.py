"""Settings shared by the HTTP and WebSocket endpoints."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sipgate_ai_flow.assistant.assistant import Assistant
from sipgate_ai_flow.assistant.runtime import Sender
from sipgate_ai_flow.protocol.actions import Action
from sipgate_ai_flow.protocol.events import EventBase

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

    async def respond(self, event: EventBase, send: Sender | None = None) -> list[Action]:
        """Run the assistant; even a failure outside the handlers yields the fallback, not an error."""
        try:
            return await self.assistant.handle(event, send=send)
        except Exception:
            self.assistant.observer.error("server")
            logger.exception("handling %s failed in session %s", event.type, event.session.id)
            fallback = self.assistant.fallback_actions(event)
            if send is None:
                return fallback
            if fallback:
                await send(fallback)
            return []
