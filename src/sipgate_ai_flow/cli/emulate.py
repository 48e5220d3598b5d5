"""``aiflow test``, ``aiflow replay`` and ``aiflow call``: the emulator on the command line."""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from sipgate_ai_flow.testing.checks import StrictModeError
from sipgate_ai_flow.testing.emulator import EmulatedCall, Emulator, EmulatorError, Entry
from sipgate_ai_flow.testing.latency import AWAITED_EVENTS
from sipgate_ai_flow.testing.speech import strip_ssml
from sipgate_ai_flow.testing.transports import TransportError

if TYPE_CHECKING:
    from sipgate_ai_flow.testing.record import ReplayResult
    from sipgate_ai_flow.testing.report import StepFigures
    from sipgate_ai_flow.testing.scenario import ScenarioResult

__all__ = ["CallSetup", "Renderer", "print_replay", "print_results", "run_call"]

HELP = """Commands (anything else is said by the caller):
  /press KEYS        press keypad keys, e.g. /press 12#
  /wait SECONDS      stay silent
  /interrupt [MS] T  say T over what is playing, MS into it (scripted calls)
  /listen [S]        let the assistant finish speaking; over a WebSocket also wait up to S
                     seconds for what it sends late (scripted calls)
  /raw               show or hide the raw events and actions
  /hangup            hang up (also /quit, Ctrl-D)"""


def _clock(ms: float) -> str:
    seconds = ms / 1000
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def _moves_on(entry: Entry) -> bool:
    """Whether the call has moved past the speech queued so far when ``entry`` is logged.

    Any event but the speech's own does, and so does the caller hanging up. A step does not
    otherwise: it is logged when the caller starts waiting for the assistant to finish.
    """
    if entry.kind == "event":
        return entry.data.get("type") not in ("assistant_speak", "assistant_speech_ended")
    return entry.kind == "step" and "hangup" in entry.data


def _after(latency_ms: float) -> str:
    return f"after {latency_ms:.0f} ms"


class Renderer:
    """Prints a call as it happens: what the caller hears and does, and every violation in red.

    The assistant's first line of each turn says how long the first action took to arrive
    ("after 312 ms"): on the speech the caller hears, or on the hangup, transfer or SMS.
    """

    def __init__(self, console: Console, *, raw: bool = False) -> None:
        self.console = console
        self.raw = raw
        # A hangup or transfer waits for the speech queued ahead of it: its line is printed when
        # the call moves on past that speech, in the order the caller hears things.
        self._pending: list[str] = []
        self._last_stamp = ""
        self._latency: float | None = None  # of the turn whose first speech is still to be heard

    def __call__(self, entry: Entry) -> None:
        """Print one transcript entry (the call's listener)."""
        stamp = f"[dim]{_clock(entry.at_ms)}[/]"
        data = entry.data
        if _moves_on(entry):
            # Stamped when what came before it ended (a speech, a ring): when it was carried out.
            self.flush()
        if entry.kind == "event" and data.get("type") in AWAITED_EVENTS:
            self._latency = None  # a new turn: an older one's latency no longer applies
        if self.raw and entry.kind in ("event", "action"):
            arrow = "[cyan]→ event [/]" if entry.kind == "event" else "[green]← action[/]"
            if entry.kind == "event" and data["type"] != "session_start":
                data = {k: v for k, v in data.items() if k != "session"}  # the same in every event
            timed = f" [dim]({_after(entry.latency_ms)})[/]" if entry.latency_ms is not None else ""
            self.console.print(
                f"{stamp} {arrow} {escape(json.dumps(data, ensure_ascii=False))}{timed}", soft_wrap=True
            )
        line = self._line(entry)
        if line and entry.kind == "action" and data.get("type") in ("hangup", "transfer"):
            self._pending.append(line)
        elif line:
            self.console.print(f"{stamp} {line}", soft_wrap=True)
        self._last_stamp = stamp

    def flush(self) -> None:
        """Print the hangup or transfer lines still waiting for queued speech."""
        for line in self._pending:
            self.console.print(f"{self._last_stamp} {line}", soft_wrap=True)
        self._pending.clear()

    def _line(self, entry: Entry) -> str | None:
        data = entry.data
        if entry.kind == "violation":
            return f"[bold red]violation {data['kind']}[/][red] {escape(str(data['message']))}[/]"
        if entry.kind == "step":
            return "[bold cyan]you[/] hang up" if "hangup" in data else None
        if entry.kind == "action":
            return self._timed_action(entry)
        if entry.kind != "event":
            return None
        kind = data["type"]
        if kind == "user_speak":
            over = " [yellow](interrupting the assistant)[/]" if data.get("barged_in") else ""
            return f'[bold cyan]you[/] "{escape(data["text"])}"{over}'
        if kind == "dtmf_received":
            return f"[bold cyan]you[/] press {escape(data['digit'])}"
        if kind == "assistant_speak":
            seconds = data["duration_ms"] / 1000
            words = data.get("text") or strip_ssml(data.get("ssml") or "")
            if not words and data.get("ssml"):
                return None  # SSML of pauses alone: nothing to hear
            heard = f'"{escape(words)}"' if words else "[italic]audio[/]"
            timed = f", {_after(self._latency)}" if self._latency is not None else ""
            self._latency = None
            return f"[bold green]assistant[/] {heard} [dim]({seconds:.1f} s{timed})[/]"
        if kind == "user_input_timeout":
            return "[dim]  (silence: user_input_timeout)[/]"
        if kind == "session_start" and entry.step > 0:
            return "[yellow]  (the transfer was not answered; the call is back)[/]"
        if kind == "sms_failed":
            return f"[yellow]  (SMS to {escape(data['recipient'])} failed: {data['reason']})[/]"
        return None

    def _timed_action(self, entry: Entry) -> str | None:
        line = self._action(entry.data)
        if entry.latency_ms is not None:
            if line is None:  # a speak (or a setting before one): the speech's line says it
                self._latency = entry.latency_ms
            else:
                line += f" [dim]({_after(entry.latency_ms)})[/]"
        return line

    @staticmethod
    def _action(action: dict[str, Any]) -> str | None:
        kind = action.get("type")
        if kind == "transfer":
            number = action.get("target_phone_number") or action.get("transfer_to")
            return f"[bold green]assistant[/] transfers the call to {escape(str(number))}"
        if kind == "send_sms":
            return f"[bold green]assistant[/] sends an SMS to {escape(str(action.get('phone_number')))}"
        if kind == "hangup":
            return "[bold green]assistant[/] hangs up"
        return None

    def ended(self, call: EmulatedCall) -> None:
        """Print how the call ended and a summary of what was found."""
        self.flush()
        details = {
            "assistant_hangup": "the assistant hung up",
            "caller_hangup": "you hung up",
            "transferred": f"transferred to {call.transferred_to}",
            "transfer_failed": f"the transfer to {call.transferred_to} failed",
            "connection_lost": "the connection to the assistant was lost",
            "strict_failure": "failed by strict mode",
        }
        reason = details.get(call.end_reason or "", "not ended")
        count = len(call.violations)
        found = f"[bold red]{count} violation{'s' * (count != 1)}[/]" if count else "[green]no violations[/]"
        latency = call.latency
        unanswered = f", {latency.unanswered} unanswered" if latency.unanswered else ""
        timing = (
            f"; [dim]first action {latency} over {latency.count} turns{unanswered}[/]"
            if latency.count
            else ""
        )
        self.console.print(f"[bold]call ended[/]: {reason}; {found}{timing}", soft_wrap=True)


@dataclass
class CallSetup:
    """Options of ``aiflow call`` that shape the call."""

    direction: str = "inbound"
    from_number: str | None = None
    to_number: str | None = None
    transfer_answers: bool = True
    sms_failure: str | None = None


async def run_call(
    emulator: Emulator,
    setup: CallSetup,
    console: Console,
    *,
    script: Iterable[str] | None,
    raw: bool,
    record: Path | None,
) -> int:
    """Place one call: live from the terminal (``script`` is None) or from scripted lines."""
    call = emulator.call(
        direction="outbound" if setup.direction == "outbound" else "inbound",
        from_number=setup.from_number,
        to_number=setup.to_number,
        transfer_answers=setup.transfer_answers,
        sms_failure=setup.sms_failure,
    )
    renderer = Renderer(console, raw=raw)
    call.listeners.append(renderer)
    try:
        await call.start()
        if script is None:
            console.print("[dim]Type to speak, /help for commands.[/]")
            await _live(call, renderer, console)
        else:
            for line in script:
                if call.ended or not await _guarded(_scripted, call, renderer, console, line.strip()):
                    break
            if not call.ended:
                await call.listen()
        if not call.ended:
            await call.hangup()
    except (StrictModeError, EmulatorError) as exc:
        console.print(f"[bold red]{escape(str(exc))}[/]")
    except TransportError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return 1
    finally:
        await call.close()
        if record is not None:
            call.save(record)
    renderer.ended(call)
    if record is not None:
        console.print(f"[dim]recorded to {record}[/]")
    return 1 if call.violations else 0


LineRunner = Callable[[EmulatedCall, Renderer, Console, str], Awaitable[bool]]


async def _guarded(
    run: LineRunner, call: EmulatedCall, renderer: Renderer, console: Console, line: str
) -> bool:
    # A mistyped command must not end the call: say what is wrong and go on.
    try:
        return await run(call, renderer, console, line)
    except EmulatorError as exc:
        console.print(f"[red]{escape(str(exc))}[/]")
    except ValueError:
        console.print(f"[red]cannot read {escape(line)!r}[/]; /help lists the commands")
    return True


async def _scripted(call: EmulatedCall, renderer: Renderer, console: Console, line: str) -> bool:
    if not line or line.startswith("#"):
        return True
    command, _, rest = line.partition(" ")
    if not line.startswith("/"):
        await call.say(line)
    elif command == "/press":
        await call.press(rest.replace(" ", ""))
    elif command == "/wait":
        await call.silence(float(rest))
    elif command == "/interrupt":
        words = shlex.split(rest)
        after = float(words.pop(0)) if words and words[0].replace(".", "", 1).isdigit() else 0.0
        await call.interrupt(" ".join(words), after_ms=after)
    elif command == "/listen":
        await call.listen(float(rest) if rest.strip() else 0.0)
    elif command == "/raw":
        renderer.raw = not renderer.raw
    elif command in ("/hangup", "/quit"):
        await call.hangup()
        return False
    else:
        console.print(HELP)
    return True


async def _live(call: EmulatedCall, renderer: Renderer, console: Console) -> None:
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def readable() -> None:
        line = sys.stdin.readline()
        lines.put_nowait(line if line else None)

    loop.add_reader(sys.stdin.fileno(), readable)
    ticker = asyncio.create_task(_tick(call))
    try:
        while not call.ended:
            getter = asyncio.ensure_future(lines.get())
            await asyncio.wait({getter, ticker}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                break
            line = getter.result()
            if line is None:
                break
            if not await _guarded(_live_line, call, renderer, console, line.strip()):
                break
    finally:
        loop.remove_reader(sys.stdin.fileno())
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)


async def _tick(call: EmulatedCall) -> None:
    # Real time: playback ends, timeouts fire and WebSocket pushes arrive while the caller types.
    while not call.ended:
        await call.tick()
        await asyncio.sleep(0.05)


async def _live_line(call: EmulatedCall, renderer: Renderer, console: Console, line: str) -> bool:
    if not line:
        return True
    command, _, rest = line.partition(" ")
    now = call.elapsed_ms
    if not line.startswith("/"):
        await call.say(line, at_ms=now)
    elif command == "/interrupt":
        await call.say(rest, at_ms=now)
    elif command == "/press":
        await call.press(rest.replace(" ", ""), at_ms=now)
    elif command == "/wait":
        await asyncio.sleep(float(rest))
    elif command == "/raw":
        renderer.raw = not renderer.raw
    elif command in ("/hangup", "/quit"):
        await call.hangup(at_ms=now)
        return False
    else:
        console.print(HELP)
    return True


def print_results(results: list[ScenarioResult], console: Console, *, verbose: bool) -> None:
    """Print one line per scenario (over its runs) with its first-action latency, the failures
    and the transcript of a failed call under it, and a summary.

    Steps with a ``within_ms`` limit show their latency; ``verbose`` shows every step's, and
    every call's transcript.
    """
    from sipgate_ai_flow.testing.latency import Latency  # noqa: PLC0415
    from sipgate_ai_flow.testing.report import group_runs  # noqa: PLC0415

    grouped = group_runs(results)
    for runs in grouped:
        call = runs.results[0].call
        events = len(call.events) if call else 0
        count = f", {len(runs.results)} runs" if len(runs.results) > 1 else ""
        timing = f", first action {runs.latency}" if runs.latency.count else ""
        source = f"[dim]{escape(runs.scenario.source)}, {events} events{count}{timing}[/]"
        verdict = "[green]PASS[/]" if runs.passed else "[bold red]FAIL[/]"
        console.print(f"{verdict} {escape(runs.scenario.name)}  {source}", soft_wrap=True)
        for failure in runs.failures:
            console.print(f"     [red]{escape(failure)}[/]", soft_wrap=True)
        for step in runs.steps:
            if verbose or step.within_ms is not None:
                console.print(f"     [dim]{escape(_step_latency(step))}[/]", soft_wrap=True)
        shown = next((r for r in runs.results if verbose or not r.passed), None)
        if shown is not None and shown.call is not None:
            renderer = Renderer(console, raw=verbose)
            for entry in shown.call.transcript:
                renderer(entry)
    failed = sum(not r.passed for r in grouped)
    colour = "red" if failed else "green"
    overall = Latency.of(turn for runs in grouped for turn in runs.turns)
    timing = f"; first action {overall} over {overall.count} turns" if overall.count else ""
    counted = f"{len(grouped)} scenarios: {len(grouped) - failed} passed, {failed} failed"
    console.print(f"[bold {colour}]{counted}[/]{timing}", soft_wrap=True)


def _step_latency(step: StepFigures) -> str:
    figures = step.latency
    if figures.count == 0:
        measured = "no action"
    elif len(step.runs_ms) == 1:
        measured = f"first action after {figures.p50:.0f} ms"
    else:
        measured = f"first action {figures} over {len(step.runs_ms)} runs"
        measured += f", {figures.unanswered} unanswered" if figures.unanswered else ""
    limit = f" (limit {step.within_ms:g} ms)" if step.within_ms is not None else ""
    where = "the call's start" if step.number == 0 else f"step {step.number} {step.description}"
    return f"{where}: {step.event} → {measured}{limit}"


def print_replay(result: ReplayResult, console: Console) -> None:
    """Print whether a replay matched its recording, and where it did not."""
    steps = result.call.transcript[-1].step + 1 if result.call.transcript else 0
    if result.error:
        console.print(f"[bold red]replay stopped:[/] {escape(result.error)}")
    for difference in result.differences:
        console.print(f"[bold red]differs[/] {escape(str(difference))}")
    for violation in result.call.violations:
        console.print(f"[red]violation {escape(str(violation))}[/]")
    if result.same:
        console.print(f"[green]same[/]: {steps} steps replayed, every answer as recorded")
    else:
        console.print(f"[bold red]{len(result.differences)} of {steps} steps answered differently[/]")
