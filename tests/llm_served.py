"""An LLM agent the tests serve as real ``aiflow serve`` processes, on the fake model at
``OPENAI_BASE_URL``."""

from __future__ import annotations

from sipgate_ai_flow import Assistant
from sipgate_ai_flow.llm import Agent

assistant = Agent("You are a receptionist.", model="fake", greeting="Hello.").attach(Assistant())
