"""The smallest useful assistant: greets, then repeats what the caller says.

aiflow serve examples/echo.py:assistant
"""

import os

from sipgate_ai_flow import Assistant, SessionStart, UserSpeak

assistant = Assistant(token=os.environ.get("AIFLOW_TOKEN"))


@assistant.on_session_start
async def greet(event: SessionStart) -> str:
    return "Hello! Say something and I will repeat it."


@assistant.on_user_speak
async def echo(event: UserSpeak) -> str:
    return f"You said: {event.text}"
