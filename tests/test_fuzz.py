"""Bad input, fuzzed: random and mutated events against the codec and a real server.

Every input must come out as a parsed event or a clear error (a 4xx over HTTP, a dropped frame
over WebSocket): never a crash, a 500, a hang, or an effect on another call. ``pytest --full``
runs many more examples and the coverage-guided fuzzer for ten minutes.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from sipgate_ai_flow import Assistant
from sipgate_ai_flow.errors import InvalidActionError, InvalidEventError
from sipgate_ai_flow.protocol.codec import dump_actions, dump_event, parse_actions, parse_event
from sipgate_ai_flow.server import create_app
from tests.helpers import ROOT, event, running_server

DATA = ROOT / "tests" / "data"
EVENTS = [json.loads(p.read_text()) for p in sorted((DATA / "events").glob("*.json"))]
ACTIONS = [json.loads(p.read_text()) for p in sorted((DATA / "actions").glob("*.json"))]
TOKEN = "fuzz-token"
LIMIT = 64 * 1024
BAD_WAV_HEADER = b"UklGRiQAAABXQVZFZm29IBAA7AABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA="

# -- strategies --------------------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**30, max_value=10**40)
    | st.floats()  # NaN and infinities included: json.dumps writes them as NaN/Infinity tokens
    | st.text()
    | st.text(min_size=5_000, max_size=20_000)
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, (*prefix, index))
    return out


def _get(document: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        document = document[part]
    return document


def _set(document: Any, path: tuple[Any, ...], value: Any, *, delete: bool = False) -> Any:
    if not path:
        return value
    parent = _get(document, path[:-1])
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return document


@st.composite
def mutated_documents(draw: st.DrawFn, originals: list[Any]) -> bytes:
    """A golden document with a few of its values replaced, removed or added, then serialised,
    perhaps with its bytes damaged as well."""
    document = json.loads(json.dumps(draw(st.sampled_from(originals))))
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(_paths(document)))
        how = draw(st.sampled_from(["replace", "delete", "add"]))
        target = _get(document, path)
        if how == "delete" and path:
            document = _set(document, path, None, delete=True)
        elif how == "add" and isinstance(target, dict):
            target[draw(st.text(max_size=12))] = draw(json_values)
        else:
            document = _set(document, path, draw(json_values))
    text = json.dumps(document, allow_nan=True).encode("utf-8", "surrogatepass")
    damage = draw(st.sampled_from(["none", "none", "truncate", "insert", "duplicate", "nest", "bad-utf8"]))
    if damage == "truncate":
        text = text[: draw(st.integers(0, max(len(text) - 1, 0)))]
    elif damage == "insert":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.binary(min_size=1, max_size=8)) + text[at:]
    elif damage == "duplicate":  # a second "type" key; JSON parsers keep the last one
        text = b'{"type": ' + json.dumps(draw(st.text(max_size=20))).encode() + b", " + text[1:]
    elif damage == "nest":
        depth = draw(st.integers(1, 3_000))
        text = b'{"x": ' + b"[" * depth + b"]" * depth + b", " + text[1:]
    elif damage == "bad-utf8":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"])) + text[at:]
    return text


event_bytes = (
    mutated_documents(EVENTS)
    | st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v, allow_nan=True).encode("utf-8", "surrogatepass"))
)


# -- the codec ---------------------------------------------------------------------------------


def _check_error(exc: InvalidEventError | InvalidActionError) -> None:
    assert exc.errors, "an error must say what is wrong"
    json.dumps(exc.to_dict())  # the server sends it as its 400 body
    assert str(exc)


@given(event_bytes)
@example(b"[" * 100_000)
@example(b'{"type": "user_speak", "text": "\\ud800", "session": {"id": "s"}}')
@example(b'{"type": "user_speak", "text": "x", "session": {"id": "s"}, "extra": NaN}')
@example(b'{"type": "dtmf_received", "digit": "1", "session": {"id": "s"}, "n": 1' + b"0" * 5000 + b"}")
def test_any_bytes_parse_to_an_event_or_a_clear_error(data: bytes) -> None:
    try:
        parsed = parse_event(data)
    except InvalidEventError as exc:
        _check_error(exc)
        return
    # What parses must write out and read back the same.
    once = dump_event(parsed)
    assert dump_event(parse_event(once)) == once


@given(json_values | st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_any_decoded_document_parses_to_an_event_or_a_clear_error(document: Any) -> None:
    try:
        parsed = parse_event(document if isinstance(document, dict) else {"type": document})
    except InvalidEventError as exc:
        _check_error(exc)
        return
    assert parsed.session.id


@given(mutated_documents(ACTIONS) | st.binary(max_size=200))
@example(b"[" * 5_000 + b"]" * 5_000)
# A WAV header on which Python's wave module raises RuntimeError (found by the atheris target).
@example(b'{"type": "audio", "session_id": "s", "audio": "%s"}' % BAD_WAV_HEADER)
# An overflowing number is inf, which used to pass and go out as null (found by atheris in CI).
@example(b'{"type": "speak", "session_id": "s", "text": "x", "user_input_timeout_seconds": 1e3095}')
@example(b'{"type": "mix_audio", "session_id": "s", "volume": NaN}')
def test_any_reply_body_parses_to_actions_or_a_clear_error(data: bytes) -> None:
    try:
        actions = parse_actions(data)
    except InvalidActionError as exc:
        _check_error(exc)
        return
    once = dump_actions(actions)
    if once is None:
        assert actions == []  # an empty array: no actions, HTTP 204
    else:
        assert dump_actions(parse_actions(once)) == once


# -- the server --------------------------------------------------------------------------------


def _echo() -> Assistant:
    assistant = Assistant(token=TOKEN)
    assistant.on_session_start(lambda ev, call: f"start {call.id}")
    assistant.on_user_speak(lambda ev, call: f"{call.id} heard {len(ev.text)}")
    assistant.on_event(lambda ev: None)
    return assistant


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with running_server(create_app(_echo(), max_message_size=LIMIT)) as address:
        yield address


@pytest.fixture(scope="module")
def http(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{server}", headers={"X-API-TOKEN": TOKEN}, timeout=10) as client:
        yield client


def _a_good_call_still_works(http: httpx.Client) -> None:
    call = f"good-{uuid.uuid4()}"
    reply = http.post("/webhook", json=event("user_speak", call, text="four"))
    assert reply.status_code == 200
    assert reply.json() == {"type": "speak", "session_id": call, "text": f"{call} heard 4"}


content_types = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "text/plain", "", "application/xml"]
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=event_bytes, content_type=content_types)
@example(body=b"", content_type="application/json")
@example(body=b"{" * (LIMIT + 1), content_type="application/json")
@example(
    body=b'{"type": "user_speak", "text": "' + b"a" * LIMIT + b'", "session": {"id": "big"}}', content_type=""
)
def test_any_webhook_body_gets_an_answer_or_a_4xx_and_the_server_goes_on(
    http: httpx.Client, body: bytes, content_type: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = http.post("/webhook", content=body, headers=headers)
    assert response.status_code in (200, 204, 400, 413, 415), response.text
    if response.status_code == 200:
        parse_actions(response.content)  # what the service gets is valid
    elif response.status_code != 204:
        assert response.json()["error"]
    _a_good_call_still_works(http)


@pytest.fixture(scope="module")
def websocket(server: str) -> Iterator[ClientConnection]:
    with connect(f"ws://{server}/ws?token={TOKEN}", max_size=None) as ws:
        yield ws


def _drain(ws: ClientConnection, expected: Any) -> list[Any]:
    # Answers to fuzz frames that happened to be valid events: read until ``expected`` came (or
    # 5 s passed: a loaded machine may take longer than a quiet moment), then until it is quiet.
    answers: list[Any] = []
    deadline = time.monotonic() + 5
    while expected not in answers and time.monotonic() < deadline:
        try:
            answers.append(json.loads(ws.recv(timeout=max(deadline - time.monotonic(), 0.01))))
        except TimeoutError:
            break
    while True:
        try:
            answers.append(json.loads(ws.recv(timeout=0.05)))
        except TimeoutError:
            return answers


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=event_bytes, as_text=st.booleans())
@example(frame=b"x" * (LIMIT + 1), as_text=True)
@example(frame=b"\xff\xfe", as_text=False)
def test_any_websocket_frame_is_answered_or_dropped_and_the_connection_stays_up(
    websocket: ClientConnection, http: httpx.Client, frame: bytes, as_text: bool
) -> None:
    text = frame.decode("utf-8", "replace") if as_text else None
    websocket.send(text if text is not None else frame)
    call = f"good-{uuid.uuid4()}"
    websocket.send(json.dumps(event("session_start", call)))
    greeting = {"type": "speak", "session_id": call, "text": f"start {call}"}
    answers = _drain(websocket, greeting)
    # The good call got its answer on the same connection, whatever came before it.
    assert greeting in answers
    parse_actions(json.dumps(answers))
    websocket.send(json.dumps(event("session_end", call)))
    _a_good_call_still_works(http)


# -- the coverage-guided fuzzer ----------------------------------------------------------------


def test_the_coverage_guided_fuzzer_finds_nothing(tmp_path: Path, full_run: bool) -> None:
    pytest.importorskip("atheris", reason="atheris is in the dev extra; `make install` installs it")
    seconds = 600 if full_run else int(os.environ.get("AIFLOW_FUZZ_SECONDS", "20"))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for n, path in enumerate(sorted(DATA.glob("*/*.json"))):
        (corpus / f"seed-{n}").write_bytes(path.read_bytes())
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "fuzz" / "codec.py"),
            str(corpus),
            f"-max_total_time={seconds}",
            f"-dict={ROOT / 'fuzz' / 'aiflow.dict'}",
            "-max_len=4096",
            "-timeout=10",
            f"-artifact_prefix={tmp_path}/",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=False,
    )
    log = result.stderr[-3000:]
    assert result.returncode == 0, log
    runs = int(log.rsplit("Done ", 1)[1].split(" runs")[0])
    assert runs > 1_000, log  # it really ran
    stats = [line for line in log.splitlines() if " cov: " in line]
    print(f"atheris: {runs} runs in {seconds} s; last: {stats[-1] if stats else '?'}")  # for -s runs
    assert not list(tmp_path.glob("crash-*")), log


def test_the_fuzz_target_reports_a_broken_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    # The target's own checks must be able to fail: with a round trip that changes the event, a
    # valid event must make it stop.
    spec = importlib.util.spec_from_file_location("fuzz_codec", ROOT / "fuzz" / "codec.py")
    assert spec is not None
    assert spec.loader is not None
    target = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(target)
    sample = (DATA / "events" / "protocol-3.3.user_speak.json").read_bytes()
    target.check(sample)  # the real codec passes
    stamps = itertools.count()  # a dump that differs each time, as a lossy codec's would
    monkeypatch.setattr(target, "dump_event", lambda ev: dump_event(ev)[:-1] + b',"n":%d}' % next(stamps))
    with pytest.raises(AssertionError, match="round trip changed the event"):
        target.check(sample)
