"""The bare Starlette peer: the echo assistant with orjson, no SDK.

uvicorn benchmarks.servers.starlette_peer:app
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from benchmarks.servers.behaviour import answer, authorized


async def webhook(request: Request) -> Response:
    token = request.headers.get("x-api-token")
    if not authorized(token.encode() if token is not None else None):
        return JSONResponse({"error": "Unauthorized"}, status_code=401)
    try:
        reply = answer(await request.body())
    except ValueError:
        return JSONResponse({"error": "Invalid event"}, status_code=400)
    if reply is None:
        return Response(status_code=204)
    return Response(reply, media_type="application/json")


async def ws(websocket: WebSocket) -> None:
    token = websocket.headers.get("x-api-token")
    if not authorized(token.encode() if token is not None else None):
        await websocket.close(code=1008)
        return
    await websocket.accept()
    try:
        while True:
            try:
                reply = answer(await websocket.receive_text())
            except ValueError:
                continue
            if reply is not None:
                await websocket.send_text(reply.decode())
    except WebSocketDisconnect:
        pass


app = Starlette(routes=[Route("/webhook", webhook, methods=["POST"]), WebSocketRoute("/ws", ws)])
