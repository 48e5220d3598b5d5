"""The dev console in a real browser: Debian's Chromium, driven by Playwright, on a real
``aiflow console`` process.

Headless Chromium has no voice to speak with and no microphone: the page takes its timing from
the emulator, so the calls run as on a phone all the same. With ``AIFLOW_SCREENSHOTS=1`` the
tests write the screenshots of docs/console.md into docs/img/.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.helpers import AIFLOW, ROOT, aiflow_serve, free_port, running_server, serving, wav_b64

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = ROOT / "docs" / "img" if os.environ.get("AIFLOW_SCREENSHOTS") == "1" else None
WAIT = 20_000  # ms: liveness only; the machine may be busy
BOT = "examples/support_bot.py:assistant"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed; `make chromium` installs Debian's package")
    with sync_playwright() as playwright:
        # Never a downloaded browser: the system's Chromium, as the page's users would have.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@contextmanager
def aiflow_console(target: str, *args: str, log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real ``aiflow console`` process; yields its base URL once it answers."""
    port = free_port()
    argv = [str(AIFLOW), "console", target, "--no-browser", "--port", str(port), "--wpm", "400", *args]
    with serving(argv, port, log=log) as (address, process):
        yield f"http://{address}", process


# Records what the page asks the browser's voice to do, instead of speaking.
LISTENING_VOICE = """
window.spoken = [];
speechSynthesis.speak = (utterance) => window.spoken.push(["speak", utterance.text]);
speechSynthesis.cancel = () => window.spoken.push(["cancel"]);
"""
# A browser with neither speech synthesis nor recognition.
NO_SPEECH = """
for (const name of ["speechSynthesis", "SpeechRecognition", "webkitSpeechRecognition"]) {
  for (const owner of [window, Window.prototype]) delete owner[name];
}
"""


@contextmanager
def opened(browser: Browser, url: str, *, init: str | None = None) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 820}, accept_downloads=True)
    if init is not None:
        context.add_init_script(init)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    expect(page.locator("#connection")).to_have_text("connected", timeout=WAIT)
    try:
        yield page
    finally:
        context.close()
    assert errors == [], "the page raised"


def rows(page: Page, call: str) -> list[tuple[str, str]]:
    """The timeline's events, actions and violations: (kind, type) per row."""
    found = page.locator(f"#call-{call} .timeline tr.row").evaluate_all(
        "rows => rows.map(r => [r.dataset.kind, r.dataset.type])"
    )
    return [(kind, kind_type) for kind, kind_type in found]


def row(page: Page, call: str, kind_type: str) -> Any:
    return page.locator(f"#call-{call} .timeline tr.row[data-type='{kind_type}']")


def new_call(page: Page, **settings: str) -> None:
    for name, value in settings.items():
        field = page.locator(f"#new-call [name={name}]")
        if name == "direction":
            field.select_option(value)
        else:
            field.fill(value)
    page.click("#new-call-button")


def shoot(page: Page, name: str) -> None:
    if SCREENSHOTS is not None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / name))


def download(page: Page, selector: str, path: Path) -> Path:
    with page.expect_download(timeout=WAIT) as info:
        page.click(selector)
    info.value.save_as(path)
    return path


def aiflow(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [str(AIFLOW), *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120, check=False
    )


@pytest.mark.parametrize("via", ["inprocess", "http", "ws"])
def test_a_call_in_the_browser(browser: Browser, via: str, tmp_path: Path) -> None:
    flags = {"inprocess": [], "http": ["--http"], "ws": ["--ws"]}[via]
    # In-process, the voice is watched; over HTTP the browser has no speech at all.
    init = {"inprocess": LISTENING_VOICE, "http": NO_SPEECH, "ws": None}[via]
    with (
        aiflow_console(BOT, *flags, log=tmp_path / "console.log") as (url, _),
        opened(browser, url, init=init) as page,
    ):
        expect(page.locator("#transport")).to_have_text(
            {"inprocess": "in-process", "http": "HTTP", "ws": "WebSocket"}[via]
        )
        if via == "http":
            expect(page.locator("#speech-support")).to_have_text(
                "speech synthesis: not in this browser (silent) · "
                "microphone: not in this browser (type instead)"
            )
        talk(page)
        if via == "http":
            expect(page.locator("#call-1 .mic")).to_be_hidden()
        check_timeline(page, url, websocket=via == "ws")
        if via == "inprocess":
            check_voice(page)
        if via == "inprocess":
            shoot(page, "console-call.png")
        check_downloads(page, tmp_path)
        several_calls(page)


def talk(page: Page) -> None:
    """Type (barging in), press a key, and see the call through to its transfer."""
    new_call(page, caller_number="+4917012345")
    expect(row(page, "1", "speak")).to_contain_text("Welcome to Example Corp", timeout=WAIT)
    expect(page.locator("#call-1 .playing-label")).to_contain_text("speaking", timeout=WAIT)
    # Typing while the greeting plays (past its allow_after_ms) is a barge-in.
    page.wait_for_timeout(800)
    page.fill("#call-1 .say-input", "text me please")
    page.press("#call-1 .say-input", "Enter")
    expect(row(page, "1", "user_speak")).to_contain_text("barge-in", timeout=WAIT)
    expect(row(page, "1", "send_sms")).to_contain_text("SMS to 4917012345", timeout=WAIT)
    expect(page.locator("#call-1 .outcome")).to_contain_text("SMS to 4917012345")
    expect(page.locator("#call-1 .state")).to_contain_text('"sms_to": "4917012345"', timeout=WAIT)
    # Once the prompt has played, a key press takes the caller to an agent.
    expect(row(page, "1", "assistant_speech_ended")).to_have_count(1, timeout=WAIT)
    page.click("#call-1 .keypad button[data-key='1']")
    outcome = page.locator("#call-1 .outcome")
    expect(outcome).to_contain_text("ended: transferred", timeout=WAIT)
    expect(outcome).to_contain_text("transfer to 4921100200")
    expect(page.locator("#call-1 .hangup")).to_be_disabled()
    expect(page.locator("#calls li[data-call='1'] .chip")).to_have_text("ended")


def check_timeline(page: Page, url: str, *, websocket: bool) -> None:
    """Every event and action in order, a latency figure per turn, the JSON on click."""
    call = httpx.get(f"{url}/api/calls/1").json()
    transcript = call["transcript"]
    expected = [(e["kind"], e[e["kind"]]["type"]) for e in transcript if e["kind"] in ("event", "action")]
    assert rows(page, "1") == expected
    speech_started = [("event", "user_speech_started")] if websocket else []
    assert expected == [
        ("event", "session_start"),
        ("action", "speak"),
        ("event", "assistant_speak"),
        *speech_started,
        ("event", "user_speak"),
        ("action", "send_sms"),
        ("action", "speak"),
        ("event", "assistant_speak"),
        ("event", "assistant_speech_ended"),
        ("event", "dtmf_received"),
        ("action", "speak"),
        ("action", "transfer"),
        ("event", "assistant_speak"),
        ("event", "assistant_speech_ended"),
    ]
    shown = page.locator("#call-1 tr.row[data-latency]").evaluate_all(
        "rows => rows.map(r => [r.dataset.type, Number(r.dataset.latency)])"
    )
    turns = [[transcript[t["event"]]["event"]["type"], t["latency_ms"]] for t in call["turns"]]
    assert shown == turns
    assert [kind for kind, _ in turns] == ["session_start", "user_speak", "dtmf_received"]
    expect(page.locator("#call-1 .plot rect.bar")).to_have_count(3)
    expect(page.locator("#call-1 .latency-summary")).to_have_text(
        re.compile(r"^3 turns · median \d+\.\d ms · max \d+\.\d ms · deadline 1000 ms$")
    )
    row(page, "1", "user_speak").click()
    expect(page.locator("#call-1 tr.json")).to_contain_text('"barged_in": true')


def check_voice(page: Page) -> None:
    """Each speak was given to the browser's voice, and cut off when the emulator stopped it."""
    spoken = page.evaluate("window.spoken")
    said = [text for kind, *text in spoken if kind == "speak" for text in text]
    assert [text.split(".")[0] for text in said] == [
        "Welcome to Example Corp",
        "I have sent you a text message",
        "Connecting you to an agent",
    ]
    # The caller barged in: the greeting's voice stopped before the next speak began.
    assert spoken[:3] == [["speak", said[0]], ["cancel"], ["speak", said[1]]]
    assert spoken[-1] == ["cancel"]


def check_downloads(page: Page, tmp_path: Path) -> None:
    """The recording replays "same"; the scenario passes."""
    recording = download(page, "#call-1 .download-recording", tmp_path / "call-1.jsonl")
    scenario = download(page, "#call-1 .download-scenario", tmp_path / "call-1.yaml")
    replayed = aiflow("replay", str(recording), "--target", BOT)
    assert replayed.returncode == 0, replayed.stdout
    assert "same" in replayed.stdout
    tested = aiflow("test", str(scenario), "--target", BOT)
    assert tested.returncode == 0, tested.stdout
    assert "1 passed" in tested.stdout


def several_calls(page: Page) -> None:
    """An outbound call, and another one placed and hung up while the first goes on."""
    new_call(page, direction="outbound", caller_number="4917099999")
    expect(row(page, "2", "speak")).to_have_count(1, timeout=WAIT)
    expect(page.locator("#call-2 .session")).to_have_text("outbound, 4921100000 → 4917099999")
    new_call(page, direction="inbound")
    expect(row(page, "3", "speak")).to_have_count(1, timeout=WAIT)
    expect(page.locator("#call-2")).to_be_hidden()
    page.click("#call-3 .hangup")
    expect(page.locator("#call-3 .outcome")).to_contain_text("ended: you hung up", timeout=WAIT)
    expect(row(page, "3", "session_end")).to_have_count(1)
    page.click("#calls li[data-call='2'] button")
    expect(page.locator("#call-2")).to_be_visible()
    expect(page.locator("#calls li[data-call='2'] .chip")).to_have_text("live")
    page.click("#call-2 .hangup")
    expect(page.locator("#call-2 .outcome")).to_contain_text("ended: you hung up", timeout=WAIT)


def violating_webhook() -> Starlette:
    """Greets properly, then breaks the protocol: no session_id, an unknown action, not JSON."""

    async def webhook(request: Request) -> Response:
        event = await request.json()
        sid = event["session"]["id"]
        if event["type"] == "session_start":
            return JSONResponse({"type": "speak", "session_id": sid, "text": "Hello, how can I help?"})
        if event["type"] == "user_speak":
            return JSONResponse([{"type": "speak", "text": "Sure."}, {"type": "dance", "session_id": sid}])
        if event["type"] == "dtmf_received":
            return Response("<html>oops</html>", media_type="text/html")
        return Response(status_code=204)

    return Starlette(routes=[Route("/webhook", webhook, methods=["POST"])])


def test_a_violating_target_shows_its_violations_and_the_page_goes_on(
    browser: Browser, tmp_path: Path
) -> None:
    with (
        running_server(violating_webhook()) as address,
        aiflow_console(f"http://{address}/webhook", log=tmp_path / "console.log") as (url, console),
        opened(browser, url) as page,
    ):
        new_call(page)
        expect(row(page, "1", "speak")).to_contain_text("Hello, how can I help?", timeout=WAIT)
        page.fill("#call-1 .say-input", "I need help")
        page.press("#call-1 .say-input", "Enter")
        missing = row(page, "1", "missing_session_id").first
        expect(missing).to_contain_text("violation missing_session_id: speak has no session_id", timeout=WAIT)
        expect(row(page, "1", "invalid_action")).to_contain_text("dance")
        page.click("#call-1 .keypad button[data-key='5']")
        expect(row(page, "1", "not_json")).to_contain_text("the reply is not JSON", timeout=WAIT)
        expect(page.locator("#call-1 .outcome")).to_contain_text("3 violations")
        # Nothing froze: the caller goes on talking, and the violations stand in red.
        page.fill("#call-1 .say-input", "hello again")
        page.press("#call-1 .say-input", "Enter")
        expect(row(page, "1", "user_speak")).to_have_count(2, timeout=WAIT)
        expect(page.locator("#call-1 .outcome")).to_contain_text("5 violations", timeout=WAIT)
        color = missing.locator("td.what").evaluate("cell => getComputedStyle(cell).color")
        assert color == "rgb(198, 40, 40)"
        missing.click()
        expect(page.locator("#call-1 tr.json")).to_contain_text('"kind": "missing_session_id"')
        shoot(page, "console-violations.png")

        # The console server itself going away is said on the page too.
        console.terminate()
        console.wait(20)
        expect(page.locator("#banner")).to_contain_text("console server cannot be reached", timeout=WAIT)


@pytest.mark.parametrize("scheme", ["http", "ws"])
def test_a_target_that_dies_mid_call_leaves_the_page_usable(
    browser: Browser, scheme: str, tmp_path: Path
) -> None:
    with aiflow_serve(BOT, log=tmp_path / "serve.log") as (address, served):
        target = f"http://{address}/webhook" if scheme == "http" else f"ws://{address}/ws"
        log = tmp_path / "console.log"
        with aiflow_console(target, log=log) as (url, _), opened(browser, url) as page:
            new_call(page)
            expect(row(page, "1", "speak")).to_have_count(1, timeout=WAIT)
            served.kill()
            served.wait(10)
            if scheme == "http":  # a webhook's death shows at the next event
                page.fill("#call-1 .say-input", "hello?")
                page.press("#call-1 .say-input", "Enter")
            reason = "cannot reach" if scheme == "http" else "the assistant closed the WebSocket"
            error = page.locator("#call-1 .call-error")
            expect(error).to_contain_text(f"The call cannot go on: {reason}", timeout=WAIT)
            expect(page.locator("#calls li[data-call='1'] .chip")).to_have_text("failed")
            expect(page.locator("#call-1 .keypad button").first).to_be_disabled()
            # A new call says why it cannot be placed; the page goes on working.
            new_call(page)
            expect(page.locator("#banner")).to_contain_text("The call could not be placed", timeout=WAIT)
            expect(page.locator("#new-call-button")).to_be_enabled()
            expect(page.locator("#calls li")).to_have_count(2)
            assert reason in log.read_text()  # and the terminal says so too


PLAYED_AUDIO = """
window.played = [];
HTMLMediaElement.prototype.play = function () {
  window.played.push(this.src);
  return Promise.resolve();
};
"""


def test_an_audio_action_plays_as_audio(browser: Browser, tmp_path: Path) -> None:
    bot = tmp_path / "jingle.py"
    bot.write_text(
        "from sipgate_ai_flow import Assistant, Audio\n"
        f"JINGLE = {wav_b64(frames=8000)!r}  # half a second of silence\n"
        "assistant = Assistant(on_session_start=lambda event: Audio(audio=JINGLE))\n"
    )
    log = tmp_path / "console.log"
    with aiflow_console(str(bot), log=log) as (url, _), opened(browser, url, init=PLAYED_AUDIO) as page:
        new_call(page)
        expect(row(page, "1", "audio")).to_have_text(re.compile("audio"), timeout=WAIT)
        expect(row(page, "1", "assistant_speak")).to_contain_text("plays “audio”")
        expect(row(page, "1", "assistant_speak")).to_contain_text("0.5 s")
        expect(row(page, "1", "assistant_speech_ended")).to_have_count(1, timeout=WAIT)
        played = page.evaluate("window.played")
    assert played == [f"data:audio/wav;base64,{wav_b64(frames=8000)}"]
