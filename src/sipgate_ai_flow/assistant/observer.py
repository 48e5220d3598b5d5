"""Hooks the runtime calls as it works, for metrics. The default observer does nothing."""

from __future__ import annotations

from typing import Literal

__all__ = ["ErrorKind", "Observer"]

ErrorKind = Literal["handler", "state", "server", "bad_input"]


class Observer:
    """Subclass and override what you need; :mod:`sipgate_ai_flow.server.metrics` does so for
    Prometheus. Methods must be quick and must not raise: they run on the event path."""

    def event(self, kind: str) -> None:
        """An event of type ``kind`` arrived."""

    def handled(self, handler: str, seconds: float) -> None:
        """``handler`` finished (or failed) after ``seconds``."""

    def overrun(self, handler: str) -> None:
        """An event handled by ``handler`` was not done within its budget."""

    def hold(self) -> None:
        """A hold action was sent for a slow handler."""

    def give_up(self) -> None:
        """A handler was given up on after the last hold."""

    def error(self, kind: ErrorKind) -> None:
        """Something failed: a handler, storing state, the server, or the input."""

    def call_started(self) -> None:
        """A call began (its first ``session_start``)."""

    def call_ended(self) -> None:
        """A call that began here ended."""
