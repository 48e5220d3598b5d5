"""The FastAPI peer: the echo assistant as a hand-written FastAPI app, no SDK.

uvicorn benchmarks.servers.fastapi_peer:app

Events are validated as a pydantic discriminated union: by FastAPI's body validation on the
webhook, through a ``TypeAdapter`` on the WebSocket. Like the SDK's echo assistant it keeps a turn
counter per call (here a dict by session id, dropped at ``session_end``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import FastAPI, Header, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from benchmarks.servers.behaviour import GREETING, authorized


class Session(BaseModel):
    id: str = Field(min_length=1)
    account_id: str | None = None
    phone_number: str | None = None
    direction: str | None = None
    from_phone_number: str | None = None
    to_phone_number: str | None = None


class SessionStartEvent(BaseModel):
    type: Literal["session_start"]
    session: Session


class UserSpeakEvent(BaseModel):
    type: Literal["user_speak"]
    session: Session
    text: str
    barged_in: bool | None = None


class DtmfReceivedEvent(BaseModel):
    type: Literal["dtmf_received"]
    session: Session
    digit: str


class AssistantSpeechEndedEvent(BaseModel):
    type: Literal["assistant_speech_ended"]
    session: Session


class SessionEndEvent(BaseModel):
    type: Literal["session_end"]
    session: Session


Event = Annotated[
    SessionStartEvent | UserSpeakEvent | DtmfReceivedEvent | AssistantSpeechEndedEvent | SessionEndEvent,
    Field(discriminator="type"),
]
EVENT = TypeAdapter(Event)


class SpeakAction(BaseModel):
    type: Literal["speak"] = "speak"
    session_id: str
    text: str


turns: dict[str, int] = {}


def answer(event: Event) -> SpeakAction | None:
    """The reply to one validated event, or ``None`` for no action."""
    session_id = event.session.id
    if isinstance(event, SessionStartEvent):
        turns[session_id] = 0
        return SpeakAction(session_id=session_id, text=GREETING)
    if isinstance(event, UserSpeakEvent):
        turns[session_id] = turns.get(session_id, 0) + 1
        return SpeakAction(session_id=session_id, text=f"You said: {event.text}")
    if isinstance(event, DtmfReceivedEvent):
        return SpeakAction(session_id=session_id, text=f"You pressed {event.digit}")
    if isinstance(event, SessionEndEvent):
        turns.pop(session_id, None)
    return None


app = FastAPI()


@app.post("/webhook", response_model=None)
async def webhook(
    event: Event, x_api_token: Annotated[str | None, Header()] = None
) -> SpeakAction | Response:
    if not authorized(x_api_token.encode() if x_api_token is not None else None):
        return JSONResponse({"error": "Unauthorized"}, status_code=401)
    reply = answer(event)
    return Response(status_code=204) if reply is None else reply


@app.websocket("/ws")
async def ws(websocket: WebSocket) -> None:
    token = websocket.headers.get("x-api-token")
    if not authorized(token.encode() if token is not None else None):
        await websocket.close(code=1008)
        return
    await websocket.accept()
    try:
        while True:
            try:
                event = EVENT.validate_json(await websocket.receive_text())
            except ValidationError:
                continue
            reply = answer(event)
            if reply is not None:
                await websocket.send_text(reply.model_dump_json())
    except WebSocketDisconnect:
        pass
