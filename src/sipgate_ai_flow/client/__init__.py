"""The sipgate REST API, as far as AI Flow uses it: placing outbound calls.

>>> from sipgate_ai_flow.client import AiFlowApi
>>> api = AiFlowApi(token="...", ai_flow_id="e3670012-...", billing_device="e2")
"""

from sipgate_ai_flow.client.outbound import DEFAULT_BASE_URL, AiFlowApi, Dialed, DialRequest

__all__ = ["DEFAULT_BASE_URL", "AiFlowApi", "DialRequest", "Dialed"]
