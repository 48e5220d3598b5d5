"""Per-call state storage: a tiny async interface and its backends."""

from sipgate_ai_flow.state.base import CallRecord, SessionStore
from sipgate_ai_flow.state.memory import MemoryStore

__all__ = ["CallRecord", "MemoryStore", "SessionStore"]
