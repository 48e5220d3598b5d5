"""The transport-free core: the Assistant, the per-call context, replies and the runtime."""

from sipgate_ai_flow.assistant.assistant import (
    DEFAULT_FALLBACK,
    DEFAULT_GIVE_UP,
    DEFAULT_HOLD,
    Assistant,
    HandlerDecorator,
)
from sipgate_ai_flow.assistant.call import Call
from sipgate_ai_flow.assistant.handlers import HANDLER_NAMES
from sipgate_ai_flow.assistant.observer import Observer
from sipgate_ai_flow.assistant.replies import Reply, to_actions
from sipgate_ai_flow.assistant.runtime import Replier, Sender

__all__ = [
    "DEFAULT_FALLBACK",
    "DEFAULT_GIVE_UP",
    "DEFAULT_HOLD",
    "HANDLER_NAMES",
    "Assistant",
    "Call",
    "HandlerDecorator",
    "Observer",
    "Replier",
    "Reply",
    "Sender",
    "to_actions",
]
