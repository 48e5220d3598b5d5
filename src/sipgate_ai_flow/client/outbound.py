"""Outbound calls: ``POST /v3/ai-flows/{aiFlowId}/call`` on the sipgate REST API.

The service dials the number; when someone answers, the flow's webhook or WebSocket gets a
``session_start`` with ``direction: "outbound"`` as for any call.

A dial is not idempotent: sending it twice may ring the phone twice. So a request is only sent
again when it certainly had no effect: the connection could not be made, or the API answered 429.
A timeout after sending, or a 5xx, is raised at once with ``placed=None`` (unknown).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sipgate_ai_flow.errors import (
    ApiConnectionError,
    ApiError,
    AuthenticationError,
    BadRequestError,
    InvalidActionError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from sipgate_ai_flow.protocol.actions import PhoneNumber

__all__ = ["DEFAULT_BASE_URL", "AiFlowApi", "DialRequest", "Dialed"]

logger = logging.getLogger("sipgate_ai_flow.client")

DEFAULT_BASE_URL: Final = "https://api.sipgate.com"
ENV_TOKEN: Final = "AIFLOW_API_TOKEN"
ENV_BASE_URL: Final = "AIFLOW_API_URL"
ENV_FLOW_ID: Final = "AIFLOW_FLOW_ID"
ENV_BILLING_DEVICE: Final = "AIFLOW_BILLING_DEVICE"
_DETAIL_CHARS = 300
# Connection failures that happen before a single byte of the request left: safe to send again.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class DialRequest(BaseModel):
    """The body of a dial, with the field names of the wire (``billingDevice``, ``toPhoneNumber``)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    billing_device: str = Field(
        alias="billingDevice", min_length=1, description="The billing device suffix, e.g. 'e2'."
    )
    to_phone_number: PhoneNumber = Field(
        alias="toPhoneNumber", description="Who to call, E.164 with or without '+'."
    )


@dataclass(frozen=True, slots=True)
class Dialed:
    """A dial the API accepted: the phone is ringing (or about to)."""

    ai_flow_id: str
    to_phone_number: str
    status: int
    data: Any = None
    """The response body as JSON, if the API sent one (none is documented)."""


class AiFlowApi:
    """A client for placing outbound calls through the sipgate REST API.

    ``token`` is the API's bearer token (default: ``$AIFLOW_API_TOKEN``); ``base_url`` defaults to
    ``$AIFLOW_API_URL`` or the public API. ``ai_flow_id`` and ``billing_device`` are defaults for
    :meth:`dial` (``$AIFLOW_FLOW_ID``, ``$AIFLOW_BILLING_DEVICE``). ``transport`` is any httpx
    transport (``httpx.MockTransport``, ``httpx.ASGITransport``, ...). ``timeout`` is per request,
    ``retries`` how often a request that had no effect is tried again, ``backoff`` the first wait
    between tries (doubling, with jitter), ``max_retry_after`` the longest wait a 429 may ask for.
    """

    def __init__(
        self,
        token: str | None = None,
        *,
        base_url: str | None = None,
        ai_flow_id: str | None = None,
        billing_device: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.5,
        max_retry_after: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.token = token if token is not None else os.environ.get(ENV_TOKEN)
        self.base_url = (base_url or os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL).rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        self.ai_flow_id = ai_flow_id or os.environ.get(ENV_FLOW_ID)
        self.billing_device = billing_device or os.environ.get(ENV_BILLING_DEVICE)
        if retries < 0 or backoff < 0 or timeout <= 0:
            raise ValueError("retries and backoff must be 0 or more, timeout more than 0")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self.transport = transport

    def __repr__(self) -> str:
        # The token stays out of reprs: they end up in logs and tracebacks.
        return f"AiFlowApi(base_url={self.base_url!r}, ai_flow_id={self.ai_flow_id!r})"

    async def dial(
        self,
        to_phone_number: str,
        *,
        ai_flow_id: str | None = None,
        billing_device: str | None = None,
    ) -> Dialed:
        """Have AI Flow call ``to_phone_number``; returns once the API accepted (201).

        Raises a subclass of :class:`~sipgate_ai_flow.errors.ApiError` when it did not, and
        :class:`~sipgate_ai_flow.errors.InvalidActionError` for arguments that cannot be right.
        """
        flow = ai_flow_id or self.ai_flow_id
        device = billing_device or self.billing_device
        if not flow:
            raise ValueError(f"dial() needs ai_flow_id (or ${ENV_FLOW_ID}): the id of the calling AI flow")
        if not device:
            raise ValueError(
                f"dial() needs billing_device (or ${ENV_BILLING_DEVICE}): the suffix from sipgate, e.g. 'e2'"
            )
        if not self.token:
            raise AuthenticationError(
                f"no API token: pass token= or set ${ENV_TOKEN} to a sipgate API token", status=None
            )
        try:
            body = DialRequest(billing_device=device, to_phone_number=to_phone_number)
        except ValidationError as exc:
            raise InvalidActionError.from_validation_error("invalid dial request", exc) from None
        url = f"{self.base_url}/v3/ai-flows/{quote(flow, safe='')}/call"
        response = await self._post(url, body.model_dump(by_alias=True))
        data: Any = None
        if response.content:
            try:
                data = response.json()
            except ValueError:
                data = None
        logger.info("outbound call accepted by the API (flow %s, HTTP %d)", flow, response.status_code)
        return Dialed(flow, to_phone_number, response.status_code, data)

    async def _post(self, url: str, body: dict[str, Any]) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        async with httpx.AsyncClient(transport=self.transport, timeout=self.timeout) as client:
            for attempt in range(self.retries + 1):
                last = attempt == self.retries
                try:
                    response = await client.post(url, json=body, headers=headers)
                except _NOT_SENT as exc:
                    if last:
                        raise ApiConnectionError(
                            f"could not reach {self.base_url} ({type(exc).__name__}); no call was placed. "
                            "Check the network and base_url, then try again",
                            placed=False,
                        ) from exc
                    await asyncio.sleep(self._wait(attempt))
                    continue
                except httpx.TimeoutException as exc:
                    raise ApiConnectionError(
                        f"{self.base_url} did not answer within {self.timeout:g} s; the call may or may "
                        "not have been placed, so check before dialling again",
                        placed=None,
                    ) from exc
                except httpx.TransportError as exc:
                    raise ApiConnectionError(
                        f"the connection to {self.base_url} failed ({type(exc).__name__}: {exc}); the call "
                        "may or may not have been placed, so check before dialling again",
                        placed=None,
                    ) from exc
                if response.status_code == 429 and not last:
                    wait = _retry_after(response)
                    if wait is None or wait <= self.max_retry_after:
                        await asyncio.sleep(self._wait(attempt) if wait is None else wait)
                        continue
                if response.is_success:
                    return response
                raise _error(response)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _wait(self, attempt: int) -> float:
        # Full jitter: many workers retrying together should not hit the API in step.
        return random.uniform(0, self.backoff * 2**attempt)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# What each refusal means and what to do about it.
_REFUSALS: dict[int, tuple[type[ApiError], str]] = {
    400: (
        BadRequestError,
        "the API refused the dial (400): the AI flow needs a phone number (set one in the "
        "sipgate dashboard), and billing_device and the number must be right",
    ),
    401: (
        AuthenticationError,
        "the API token was refused (401): check that it is a current sipgate API token",
    ),
    403: (
        PermissionDeniedError,
        "the token may not place outbound calls (403): outbound calls need approval by "
        "sipgate support, and the token needs the right scope",
    ),
    404: (
        NotFoundError,
        "no such AI flow (404): check ai_flow_id, and that the token's account owns the flow",
    ),
}


def _error(response: httpx.Response) -> ApiError:
    status = response.status_code
    detail = response.text[:_DETAIL_CHARS].strip()
    if status in _REFUSALS:
        kind, message = _REFUSALS[status]
        return kind(message, status=status, detail=detail)
    if status == 429:
        wait = _retry_after(response)
        after = f"; retry after {wait:.0f} s" if wait is not None else "; wait, then try again"
        return RateLimitError(f"too many requests (429){after}", retry_after=wait, detail=detail)
    if status >= 500:
        return ServerError(
            f"sipgate's API failed ({status}); the call may or may not have been placed, so check "
            "before dialling again",
            status=status,
            detail=detail,
            placed=None,
        )
    return ApiError(f"the API answered {status}", status=status, detail=detail)
