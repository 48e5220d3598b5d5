"""The session object every event carries."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DIRECTIONS", "Direction", "SessionInfo"]

Direction = Literal["inbound", "outbound"]
DIRECTIONS: tuple[str, ...] = get_args(Direction)


class SessionInfo(BaseModel):
    """Who is on the call. Only ``id`` is required: the service's own examples omit the rest (D10)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str = Field(min_length=1, description="UUID of the session; echoed as `session_id`.")
    account_id: str | None = Field(default=None, description="sipgate account identifier.")
    phone_number: str | None = Field(
        default=None, description="The flow's own phone number (used as transfer caller id)."
    )
    # An open enum (D10): a direction newer services add must not cost the call.
    direction: Direction | str | None = Field(
        default=None,
        description="`inbound` (caller dialled in) or `outbound` (dialled by the API); newer values pass.",
    )
    from_phone_number: str | None = Field(default=None, description="The caller's number.")
    to_phone_number: str | None = Field(default=None, description="The callee's number.")
