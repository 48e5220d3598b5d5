"""The session object every event carries."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Direction", "SessionInfo"]

Direction = Literal["inbound", "outbound"]


class SessionInfo(BaseModel):
    """Who is on the call. Only ``id`` is required: the service's own examples omit the rest (D10)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str = Field(min_length=1, description="UUID of the session; echoed as `session_id`.")
    account_id: str | None = Field(default=None, description="sipgate account identifier.")
    phone_number: str | None = Field(
        default=None, description="The flow's own phone number (used as transfer caller id)."
    )
    direction: Direction | None = Field(
        default=None,
        description="`inbound` (caller dialled in) or `outbound` (dialled by the API).",
    )
    from_phone_number: str | None = Field(default=None, description="The caller's number.")
    to_phone_number: str | None = Field(default=None, description="The callee's number.")
