"""``POST /webhook``: one event per request, answered with actions or 204."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sipgate_ai_flow.errors import InvalidEventError
from sipgate_ai_flow.protocol.codec import dump_actions, parse_event
from sipgate_ai_flow.server.auth import is_authorized
from sipgate_ai_flow.server.settings import Endpoint, logger

__all__ = ["webhook_endpoint"]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def webhook_endpoint(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint for webhook events of ``endpoint.assistant``."""

    async def webhook(request: Request) -> Response:
        if not is_authorized(request, endpoint.token):
            return _error(401, "missing or wrong X-API-TOKEN")
        limit = endpoint.max_message_size
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return _error(413, f"request body over {limit} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return _error(413, f"request body over {limit} bytes")
        try:
            event = parse_event(body)
        except InvalidEventError as exc:
            endpoint.assistant.observer.error("bad_input")
            logger.info("rejected a webhook request: %s", exc.summary)
            return JSONResponse(exc.to_dict(), status_code=400)
        payload = dump_actions(await endpoint.respond(event))
        if payload is None:
            return Response(status_code=204)
        return Response(payload, media_type="application/json")

    return webhook
