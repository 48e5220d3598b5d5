"""Scenario results summed up: per scenario over its runs, per step, and as a JSON report for CI.

``aiflow test --json PATH`` writes :func:`json_report`; ``aiflow test`` prints the same figures.
A scenario run more than once (``--repeat``) passes only if every run passed; its step latencies
are taken over all runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sipgate_ai_flow.testing.latency import Latency, Turn
from sipgate_ai_flow.testing.scenario import Scenario, ScenarioResult

__all__ = ["REPORT_VERSION", "ScenarioRuns", "StepFigures", "group_runs", "json_report"]

REPORT_VERSION = 1


@dataclass(frozen=True, slots=True)
class StepFigures:
    """One caller step's first-action latency over a scenario's runs."""

    number: int
    description: str
    event: str
    within_ms: float | None
    runs_ms: list[float | None]
    """The step's latency in each run (``None``: nothing answered it in that run)."""

    @property
    def latency(self) -> Latency:
        """p50, p95 and the maximum over the runs."""
        values = [v for v in self.runs_ms if v is not None]
        return Latency.of_values(values, unanswered=len(self.runs_ms) - len(values))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "step": self.number,
            "description": self.description,
            "event": self.event,
            "within_ms": self.within_ms,
            "latency_ms": self.latency.to_dict(),
            "runs_ms": [None if v is None else round(v, 1) for v in self.runs_ms],
        }


@dataclass(frozen=True, slots=True)
class ScenarioRuns:
    """Every run of one scenario."""

    scenario: Scenario
    results: list[ScenarioResult]

    @property
    def passed(self) -> bool:
        """Whether every run passed."""
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[str]:
        """The failures of every run (prefixed with the run's number when there are several)."""
        if len(self.results) == 1:
            return list(self.results[0].failures)
        return [f"run {n}: {f}" for n, r in enumerate(self.results, 1) for f in r.failures]

    @property
    def turns(self) -> list[Turn]:
        """The turns of every run."""
        return [turn for result in self.results for turn in result.turns]

    @property
    def latency(self) -> Latency:
        """First-action figures over the turns of every run."""
        return Latency.of(self.turns)

    @property
    def steps(self) -> list[StepFigures]:
        """Each step that sent an event the assistant answers, with its latency in every run."""
        by_run = [{step.number: step for step in result.steps} for result in self.results]
        figures = []
        for number in sorted({n for steps in by_run for n in steps}):
            first = next(steps[number] for steps in by_run if number in steps)
            # A run that stopped before the step, or whose step sent nothing, has no figure for it.
            runs = [steps[number].latency_ms if number in steps else None for steps in by_run]
            event = first.turn.event if first.turn is not None else ""
            figures.append(StepFigures(number, first.description, event, first.within_ms, runs))
        return figures

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "name": self.scenario.name,
            "source": self.scenario.source,
            "passed": self.passed,
            "runs": len(self.results),
            "failed_runs": sum(not r.passed for r in self.results),
            "failures": self.failures,
            "latency_ms": self.latency.to_dict(),
            "steps": [step.to_dict() for step in self.steps],
        }


def group_runs(results: Iterable[ScenarioResult]) -> list[ScenarioRuns]:
    """The results of each scenario together, in the order the scenarios first ran."""
    grouped: dict[int, ScenarioRuns] = {}
    for result in results:
        runs = grouped.setdefault(id(result.scenario), ScenarioRuns(result.scenario, []))
        runs.results.append(result)
    return list(grouped.values())


def json_report(results: Iterable[ScenarioResult], *, target: str = "") -> dict[str, Any]:
    """A report for CI: pass/fail, failures and first-action latencies (ms) of every scenario and
    step, and the figures over all of them. ``target`` names what was called (no secrets)."""
    grouped = group_runs(results)
    failed = sum(not g.passed for g in grouped)
    return {
        "version": REPORT_VERSION,
        "target": target,
        "passed": failed == 0,
        "summary": {
            "scenarios": len(grouped),
            "passed": len(grouped) - failed,
            "failed": failed,
            "latency_ms": Latency.of(t for g in grouped for t in g.turns).to_dict(),
        },
        "scenarios": [g.to_dict() for g in grouped],
    }
