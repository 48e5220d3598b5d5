"""The AI Flow wire protocol as typed models: pure data, no I/O."""

from sipgate_ai_flow.protocol.actions import *  # noqa: F403
from sipgate_ai_flow.protocol.audio import *  # noqa: F403
from sipgate_ai_flow.protocol.codec import *  # noqa: F403
from sipgate_ai_flow.protocol.config import *  # noqa: F403
from sipgate_ai_flow.protocol.events import *  # noqa: F403
from sipgate_ai_flow.protocol.session import *  # noqa: F403
