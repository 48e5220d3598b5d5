"""Per-call state storage: a small async interface and its backends.

``RedisStore`` lives in :mod:`sipgate_ai_flow.state.redis` (extra ``[redis]``) and is imported
lazily, so the core works without the redis package.
"""

from typing import TYPE_CHECKING, Any

from sipgate_ai_flow.state.base import CallRecord, PostResult, SessionStore, Turn
from sipgate_ai_flow.state.memory import MemoryStore

if TYPE_CHECKING:
    from sipgate_ai_flow.state.redis import RedisStore

__all__ = ["CallRecord", "MemoryStore", "PostResult", "RedisStore", "SessionStore", "Turn"]


def __getattr__(name: str) -> Any:
    if name == "RedisStore":
        from sipgate_ai_flow.state.redis import RedisStore  # noqa: PLC0415 - optional extra

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
