"""The AI Flow service emulator: call an assistant without a phone, test it, record and replay.

>>> from sipgate_ai_flow import Assistant
>>> from sipgate_ai_flow.testing import Emulator
>>> emulator = Emulator(Assistant())  # or a webhook / WebSocket URL
"""

from sipgate_ai_flow.testing.api import EmulatedApi, ReceivedDial
from sipgate_ai_flow.testing.checks import StrictModeError, Violation, ViolationKind
from sipgate_ai_flow.testing.clock import Clock, RealClock, VirtualClock
from sipgate_ai_flow.testing.emulator import (
    DEFAULT_BARGE_IN,
    EmulatedCall,
    Emulator,
    EmulatorError,
    Entry,
    Playback,
)
from sipgate_ai_flow.testing.evals import EvalError, Evals, Verdict, transcript_text
from sipgate_ai_flow.testing.fake_model import (
    FakeModel,
    FakeModelError,
    FakeRule,
    FakeStep,
    FakeToolCall,
    FakeToolSpec,
)
from sipgate_ai_flow.testing.latency import Latency, StepLatency, Turn
from sipgate_ai_flow.testing.record import Difference, Recording, ReplayResult, load_recording, replay
from sipgate_ai_flow.testing.scenario import (
    Expect,
    Scenario,
    ScenarioError,
    ScenarioResult,
    Simulate,
    Step,
    load_scenarios,
    run_scenario,
    run_scenarios,
)
from sipgate_ai_flow.testing.speech import playback_ms, spoken_text, strip_ssml
from sipgate_ai_flow.testing.transports import TransportError

__all__ = [
    "DEFAULT_BARGE_IN",
    "Clock",
    "Difference",
    "EmulatedApi",
    "EmulatedCall",
    "Emulator",
    "EmulatorError",
    "Entry",
    "EvalError",
    "Evals",
    "Expect",
    "FakeModel",
    "FakeModelError",
    "FakeRule",
    "FakeStep",
    "FakeToolCall",
    "FakeToolSpec",
    "Latency",
    "Playback",
    "RealClock",
    "ReceivedDial",
    "Recording",
    "ReplayResult",
    "Scenario",
    "ScenarioError",
    "ScenarioResult",
    "Simulate",
    "Step",
    "StepLatency",
    "StrictModeError",
    "TransportError",
    "Turn",
    "Verdict",
    "Violation",
    "ViolationKind",
    "VirtualClock",
    "load_recording",
    "load_scenarios",
    "playback_ms",
    "replay",
    "run_scenario",
    "run_scenarios",
    "spoken_text",
    "strip_ssml",
    "transcript_text",
]
