"""The ``aiflow`` command: schema, validate, serve (as real subprocesses), and target loading."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from sipgate_ai_flow import Assistant
from sipgate_ai_flow.errors import TargetError
from sipgate_ai_flow.target import load_target
from tests.helpers import AIFLOW, ROOT, SESSION, aiflow_serve, event, free_port

DATA = Path(__file__).parent / "data"


def aiflow(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "sipgate_ai_flow", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )


def test_console_script_is_installed() -> None:
    result = subprocess.run([str(AIFLOW), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0
    for command in ("serve", "call", "console", "test", "replay", "schema", "validate"):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("kind", "needle"), [("event", "session_start"), ("action", "configure_voice_to_voice")]
)
def test_schema(kind: str, needle: str) -> None:
    result = aiflow("schema", kind)
    assert result.returncode == 0
    assert needle in json.dumps(json.loads(result.stdout))
    both = json.loads(aiflow("schema").stdout)
    assert set(both) == {"event", "action"}


def test_version() -> None:
    from sipgate_ai_flow import __version__

    result = aiflow("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"aiflow (sipgate-ai-flow) {__version__}"


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("dial", "API base URL [default: public API]."),
        ("serve", "in bytes [1 MiB]."),
        ("serve", "headers [10]."),
    ],
)
def test_help_keeps_bracketed_text(command: str, words: str) -> None:
    result = aiflow(command, "--help")
    assert result.returncode == 0
    assert words in " ".join(result.stdout.split())


def test_schema_rejects_an_unknown_kind() -> None:
    result = aiflow("schema", "banana")
    assert result.returncode == 2
    assert "banana" in result.stderr


def test_validate_valid_documents() -> None:
    event_result = aiflow("validate", str(DATA / "events" / "protocol-3.1.session_start.json"))
    assert event_result.returncode == 0
    assert "valid session_start event" in event_result.stdout
    actions_result = aiflow("validate", str(DATA / "actions" / "seed-a.http-array.json"))
    assert actions_result.returncode == 0
    assert "valid actions: barge_in, speak" in actions_result.stdout
    unknown = aiflow("validate", "-", stdin=json.dumps(event("recording_ready")))
    assert unknown.returncode == 0
    assert "not a known event type" in unknown.stdout


@pytest.mark.parametrize(
    ("document", "kind", "field", "words"),
    [
        (
            {
                "type": "speak",
                "session_id": "s",
                "text": "a",
                "barge_in": {"strategy": "immediate", "allow_after_ms": -5},
            },
            None,
            "barge_in.allow_after_ms",
            "greater than or equal to 0",
        ),
        (
            [
                {"type": "hangup", "session_id": "s"},
                {"type": "transfer", "session_id": "s", "timeout": 3, "target_phone_number": "4921100200"},
            ],
            None,
            "[1].timeout",
            "greater than or equal to 5",
        ),
        ({"type": "user_speak", "session": {"id": "s"}}, None, "text", "Field required"),
        ({"type": "user_speak", "text": "x", "session": {}}, "event", "session.id", "Field required"),
    ],
)
def test_validate_reports_the_field_path(
    document: Any, kind: str | None, field: str, words: str, tmp_path: Path
) -> None:
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(document))
    result = aiflow("validate", str(path), *(["--kind", kind] if kind else []))
    assert result.returncode == 1
    assert field in result.stdout
    assert words in result.stdout


def test_validate_checks_an_action_as_the_emulator_does() -> None:
    # The emulator reports a reply without session_id (test_emulator_violations); so does validate.
    bare = aiflow("validate", "-", stdin=json.dumps({"type": "speak", "text": "hi"}))
    assert bare.returncode == 1
    assert "speak has no session_id (missing_session_id)" in bare.stdout
    assert "a handler may leave session_id out" in " ".join(bare.stdout.split())
    addressed = aiflow("validate", "-", stdin=json.dumps({"type": "speak", "text": "hi", "session_id": "s"}))
    assert addressed.returncode == 0
    assert "valid action: speak" in addressed.stdout


def test_validate_reports_unknown_open_enum_values() -> None:
    document = {
        "type": "speak",
        "session_id": "s",
        "text": "hi",
        "tts": {"provider": "kugelaudio"},
        "barge_in": {"strategy": "eventually"},
    }
    result = aiflow("validate", "-", stdin=json.dumps(document))
    assert result.returncode == 1
    out = " ".join(result.stdout.split())
    assert (
        "tts.provider │ 'kugelaudio' is not a known TTS provider (azure, eleven_labs) (unknown_value)" in out
    )
    assert "barge_in.strategy │ 'eventually' is not a known barge-in strategy" in out
    sideways = event("session_start")
    sideways["session"] = {**sideways["session"], "direction": "sideways"}
    result = aiflow("validate", "-", stdin=json.dumps(sideways))
    assert result.returncode == 0
    assert "valid session_start event, but session.direction 'sideways' is not a known value" in result.stdout


def test_validate_bad_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    result = aiflow("validate", str(broken))
    assert result.returncode == 1
    assert "not valid JSON" in result.stdout
    missing = aiflow("validate", str(tmp_path / "absent.json"))
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr


# -- target loading -----------------------------------------------------------------------------


def test_load_target_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bot = tmp_path / "my_bot.py"
    bot.write_text("from sipgate_ai_flow import Assistant\nbot = Assistant()\nnot_bot = 3\nassistant = bot\n")
    assert isinstance(load_target(f"{bot}:bot"), Assistant)
    assert load_target(str(bot)) is load_target(f"{bot}:bot")  # attr defaults to "assistant"
    monkeypatch.chdir(tmp_path)
    assert isinstance(load_target("my_bot:bot"), Assistant)
    with pytest.raises(TargetError, match="has no attribute 'nobody'"):
        load_target(f"{bot}:nobody")
    with pytest.raises(TargetError, match=r"is an int, not a sipgate_ai_flow\.Assistant"):
        load_target(f"{bot}:not_bot")
    with pytest.raises(TargetError, match="no such file"):
        load_target("missing/file.py:assistant")
    with pytest.raises(TargetError, match="no module named 'no_such_module'"):
        load_target("no_such_module:assistant")


# -- serve --------------------------------------------------------------------------------------


@pytest.fixture
def served_support_bot(tmp_path: Path) -> Iterator[str]:
    env = {"AIFLOW_TOKEN": "cli-secret"}
    with aiflow_serve("examples/support_bot.py:assistant", log=tmp_path / "serve.log", env=env) as (base, _):
        yield base
    output = (tmp_path / "serve.log").read_text()
    assert "token      required" in output
    assert "cli-secret" not in output  # the secret is never printed


async def test_serve_answers_a_scripted_call_over_http(served_support_bot: str) -> None:
    headers = {"X-API-TOKEN": "cli-secret"}
    async with httpx.AsyncClient(base_url=f"http://{served_support_bot}", headers=headers) as client:
        greeting = (await client.post("/webhook", json=event("session_start"))).json()
        assert greeting["text"].startswith("Welcome to Example Corp")
        assert greeting["barge_in"]["strategy"] == "minimum_characters"
        sms = (await client.post("/webhook", json=event("dtmf_received", digit="2"))).json()
        assert [a["type"] for a in sms] == ["send_sms", "speak"]
        assert sms[0]["phone_number"] == SESSION["from_phone_number"]
        bye = (await client.post("/webhook", json=event("user_speak", text="goodbye"))).json()
        assert [a["type"] for a in bye] == ["speak", "hangup"]
        assert (await client.post("/webhook", json=event("session_end"))).status_code == 204
        refused = await client.post("/webhook", json=event("session_start"), headers={"X-API-TOKEN": "nope"})
        assert refused.status_code == 401


async def test_serve_answers_a_scripted_call_over_websocket(served_support_bot: str) -> None:
    async with connect(f"ws://{served_support_bot}/ws?token=cli-secret") as ws:

        async def exchange(document: dict[str, Any]) -> Any:
            await ws.send(json.dumps(document))
            return json.loads(await ws.recv())

        assert (await exchange(event("session_start")))["text"].startswith("Welcome")
        transfer = await exchange(event("dtmf_received", digit="1"))
        assert transfer[1]["type"] == "transfer"
        assert transfer[1]["caller_id_number"] == SESSION["phone_number"]
        back = await exchange(event("session_start"))
        assert back["text"].startswith("Sorry, nobody is free")
        for _ in range(2):
            assert (await exchange(event("user_input_timeout")))["text"].startswith("Are you still there?")
        assert [a["type"] for a in await exchange(event("user_input_timeout"))] == ["speak", "hangup"]


@pytest.mark.parametrize(
    ("source", "where", "what"),
    [
        ("import os\n\ndef broken(:\n    pass\n", "broken.py:3: SyntaxError: invalid syntax", "def broken(:"),
        ("import os\nimport no_such_module_here\n", "broken.py:2, in <module>", "import no_such_module_here"),
        ("import json\n\nSETTINGS = json.loads('{')\n", "broken.py:3, in <module>", "JSONDecodeError"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "call"])
def test_a_broken_target_file_shows_the_users_error_briefly(
    tmp_path: Path, source: str, where: str, what: str, command: str
) -> None:
    (tmp_path / "broken.py").write_text(source)
    result = subprocess.run(
        [str(AIFLOW), command, "broken.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert where in result.stderr
    assert what in result.stderr
    assert "Traceback" not in result.stderr
    assert "typer" not in result.stderr
    assert "click" not in result.stderr
    assert len(result.stderr.splitlines()) <= 5


def test_serve_reports_a_bad_target() -> None:
    result = subprocess.run(
        [str(AIFLOW), "serve", "examples/nothing_here.py:assistant"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "no such file: examples/nothing_here.py" in result.stderr


def test_serve_reload_picks_up_code_changes(tmp_path: Path) -> None:
    bot = tmp_path / "live_bot.py"
    bot.write_text(
        "from sipgate_ai_flow import Assistant\nassistant = Assistant(on_user_speak=lambda ev: 'v1')\n"
    )
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [str(AIFLOW), "serve", f"{bot}:assistant", "--port", str(port), "--reload"],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def reply() -> str | None:
        try:
            response = httpx.post(f"http://127.0.0.1:{port}/webhook", json=event("user_speak"), timeout=2)
            return str(response.json()["text"])
        except (httpx.TransportError, ValueError):
            return None

    def wait_for(text: str, edit: str | None = None) -> bool:
        deadline = time.monotonic() + 30
        edited = 0.0
        while time.monotonic() < deadline:
            if edit is not None and time.monotonic() - edited > 3:
                # uvicorn's file watcher starts after the server does; an edit made before it
                # watches goes unseen, so edit again until the new code answers.
                bot.write_text(edit)
                edited = time.monotonic()
            if reply() == text:
                return True
            time.sleep(0.2)
        return False

    try:
        assert wait_for("v1")
        assert wait_for("v2", edit=bot.read_text().replace("'v1'", "'v2'"))
    finally:
        process.terminate()
        process.wait(15)
        log.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [("notaurl", "Redis URL must specify"), ("redis://127.0.0.1:1/0", "Redis does not answer at")],
)
def test_serve_refuses_a_redis_it_cannot_use(url: str, message: str) -> None:
    result = aiflow("serve", "examples/echo.py:assistant", "--redis", url, "--port", str(free_port()))
    assert result.returncode == 2
    assert message in " ".join(result.stderr.split())  # rich wraps long lines
    assert "Traceback" not in result.stderr
