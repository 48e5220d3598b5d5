"""A receptionist on the phone: an LLM agent with tools (pip install 'sipgate-ai-flow[llm]').

It tells callers the opening hours (a lookup tool, announced before it runs), puts them
through to sales, sends an SMS to confirm, and says goodbye; the transfer and the hangup wait
until the goodbye has played. When a caller pauses mid-sentence it waits for the rest. With
``AIFLOW_TRANSCRIPTS=calls.jsonl`` set, it writes each call's transcript there (the turns with
what the caller heard, tool calls, latency and token usage), one JSON line per entry.

Any OpenAI-compatible endpoint works; settings come from the environment: ``OPENAI_BASE_URL``
(default: OpenAI), ``OPENAI_API_KEY`` (local servers need none), ``OPENAI_MODEL`` (default
``gpt-4o-mini``) and ``AIFLOW_TOKEN``.

    aiflow serve examples/llm_agent.py:assistant

Without a model of your own, talk to it through the test kit's fake model, which follows the
rules in ``examples/llm_agent_model.yaml``:

    python -m sipgate_ai_flow.testing.fake_model examples/llm_agent_model.yaml --port 8090 &
    OPENAI_BASE_URL=http://127.0.0.1:8090/v1 aiflow call examples/llm_agent.py:assistant

``examples/scenarios/llm_agent.yaml`` is its test suite (tests/test_llm_example.py runs it).
"""

from __future__ import annotations

import os
from typing import Literal

from sipgate_ai_flow import Assistant
from sipgate_ai_flow.llm import Agent, hang_up, send_sms, tool, transfer

SALES = "4921100200"
HOURS = {
    "monday": "9 am to 6 pm",
    "tuesday": "9 am to 6 pm",
    "wednesday": "9 am to 6 pm",
    "thursday": "9 am to 8 pm",
    "friday": "9 am to 6 pm",
    "saturday": "10 am to 2 pm",
    "sunday": "closed",
}
Day = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]

INSTRUCTIONS = """You are the receptionist of Example Corp, a shop for garden furniture.
You tell callers the opening hours (look them up, never guess), offer to send them by text
message, and put callers who want to buy something or ask about prices through to sales.
When the caller is done, say goodbye and end the call."""


@tool(announce={"en": "Let me look that up.", "de": "Ich schaue kurz nach."})
def opening_hours(day: Day) -> str:
    """The shop's opening hours on one day of the week.

    Args:
        day: the day of the week
    """
    return HOURS[day]


agent = Agent(
    INSTRUCTIONS,
    model=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"),
    greeting="Hello, this is Example Corp. How can I help you?",
    # A caller who pauses mid-sentence gets "Mhm." and the agent waits for the rest.
    end_of_turn="model",
    transcript_path=os.environ.get("AIFLOW_TRANSCRIPTS") or None,
    tools=[
        opening_hours,
        transfer({"sales": SALES}),
        send_sms(description="Send the caller a text message, e.g. the opening hours they asked for."),
        hang_up(),
    ],
)
assistant = agent.attach(Assistant(token=os.environ.get("AIFLOW_TOKEN")))
