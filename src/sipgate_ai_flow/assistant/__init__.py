"""The I/O-free core: handler registry, dispatch, per-call context and reply normalisation."""

from sipgate_ai_flow.assistant.assistant import DEFAULT_FALLBACK, Assistant
from sipgate_ai_flow.assistant.call import Call
from sipgate_ai_flow.assistant.handlers import HANDLER_NAMES
from sipgate_ai_flow.assistant.replies import Reply, to_actions

__all__ = ["DEFAULT_FALLBACK", "HANDLER_NAMES", "Assistant", "Call", "Reply", "to_actions"]
