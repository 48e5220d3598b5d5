"""Coverage-guided fuzz target for the codec (atheris / libFuzzer).

    python fuzz/codec.py CORPUS_DIR -dict=fuzz/aiflow.dict -max_total_time=60

Every input must parse into an event (or a reply into actions) that writes out and reads back
the same, or be refused with an error naming what is wrong. Anything else is a finding.
``tests/test_fuzz.py`` runs this for a bounded time; ``pytest --full`` for ten minutes.
"""

from __future__ import annotations

import json
import sys

from sipgate_ai_flow.errors import InvalidActionError, InvalidEventError, ProtocolError
from sipgate_ai_flow.protocol.codec import dump_actions, dump_event, parse_actions, parse_event


def _refused(exc: ProtocolError) -> None:
    assert exc.errors, f"an error without a reason: {exc!r}"
    json.dumps(exc.to_dict())


def check(data: bytes) -> None:
    """Run one input through the codec as an event and as a reply body."""
    try:
        event = parse_event(data)
    except InvalidEventError as exc:
        _refused(exc)
    else:
        once = dump_event(event)
        again = dump_event(parse_event(once))
        assert again == once, f"round trip changed the event: {once!r} -> {again!r}"
    try:
        actions = parse_actions(data)
    except InvalidActionError as exc:
        _refused(exc)
    else:
        body = dump_actions(actions)
        if body is not None:  # None: no actions, an empty array
            assert dump_actions(parse_actions(body)) == body, "round trip changed the actions"


def main() -> None:
    """Fuzz :func:`check` with the arguments libFuzzer understands."""
    import atheris  # noqa: PLC0415 - only the fuzzer needs it

    atheris.instrument_all()  # the codec and everything it calls, for coverage feedback
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
