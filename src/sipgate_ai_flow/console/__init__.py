"""The browser dev console: call an assistant from a web page through the AI Flow emulator.

``aiflow console TARGET`` serves it. The page talks (typed, or the microphone where the browser
recognises speech), plays what the assistant says with the emulator's timing, and shows every
event and action, the latency of each turn, violations and the call's outcome; a call can be
downloaded as a recording for ``aiflow replay`` or a scenario for ``aiflow test``. Its files ship
in this package (``static/``): no build step, nothing fetched at run time.
"""

from sipgate_ai_flow.console.app import ConsoleState, create_console_app
from sipgate_ai_flow.console.calls import ConsoleCall
from sipgate_ai_flow.console.export import scenario_document, scenario_yaml
from sipgate_ai_flow.console.run import run_console

__all__ = [
    "ConsoleCall",
    "ConsoleState",
    "create_console_app",
    "run_console",
    "scenario_document",
    "scenario_yaml",
]
