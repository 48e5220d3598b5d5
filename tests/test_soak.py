"""The soak, scaled down: a few hundred calls per transport through the emulator against a real
server; nothing lost or misrouted, nothing left behind. ``pytest --full`` runs 50,000 per transport."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from benchmarks.soak import Report, compare, soak, soak_server, summary


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with soak_server(tmp_path_factory.mktemp("soak") / "server.log") as address:
        yield address


@pytest.mark.parametrize("transport", ["http", "ws"])
async def test_a_soak_loses_nothing_and_leaves_nothing_behind(
    server: str, transport: str, full_run: bool
) -> None:
    calls = 50_000 if full_run else 300
    report: Report = await soak(server, transport, calls, concurrency=50)
    print(summary(report))
    assert report.failures == []  # every answer named its own call and turn
    first, last = report.baseline, report.final
    assert last.calls_in_store == 0
    assert last.tasks <= first.tasks
    assert last.objects == first.objects  # no per-call object outlived its call
    if full_run:  # memory is flat after warm-up: under 2 % of the server's size
        assert report.growth_after_warmup() < 0.02 * last.rss


def test_the_soak_catches_a_misrouted_answer() -> None:
    # What makes the soak mean something: an answer that names another call is a failure.
    expected = ["hello a", "a 1 call 0", "a key 7 after 1"]
    assert compare(0, expected, expected) == []
    assert compare(0, ["hello a", "b 1 call 0", "a key 7 after 1"], expected)
    assert compare(0, ["hello a", "a key 7 after 1"], expected)  # a lost one
