"""``aiflow``: serve an assistant, call and test it with the emulator, print schemas, validate JSON."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sipgate_ai_flow.errors import AiFlowError, FieldError, ProtocolError

app = typer.Typer(
    name="aiflow",
    help="Build, serve, call and test sipgate AI Flow assistants.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help texts are plain text: markup mode would swallow "[default: public API]" as a tag.
    rich_markup_mode=None,
)
err = Console(stderr=True)
out = Console()


def _print_version(value: bool) -> None:
    if value:
        from sipgate_ai_flow import __version__  # noqa: PLC0415

        out.print(f"aiflow (sipgate-ai-flow) {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Build, serve, call and test sipgate AI Flow assistants."""


class Kind(StrEnum):
    """Which side of the protocol a document belongs to."""

    event = "event"
    action = "action"


@app.command()
def serve(
    target: Annotated[str, typer.Argument(help="package.module:attr or path/to/file.py:attr")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    reload: Annotated[bool, typer.Option(help="Restart when the code changes.")] = False,
    token: Annotated[
        str | None,
        typer.Option(envvar="AIFLOW_TOKEN", help="Shared secret (X-API-TOKEN); overrides the assistant's."),
    ] = None,
    webhook_path: Annotated[str, typer.Option(help="Path of the HTTP webhook.")] = "/webhook",
    ws_path: Annotated[str, typer.Option(help="Path of the WebSocket endpoint.")] = "/ws",
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (use --redis with more than 1).")] = 1,
    redis: Annotated[
        str | None,
        typer.Option(
            "--redis", envvar="AIFLOW_REDIS_URL", help="Keep call state in Redis (redis://host:port/db)."
        ),
    ] = None,
    shutdown_grace: Annotated[
        float, typer.Option(help="Seconds running handlers get to finish when the server stops.")
    ] = 10.0,
    # The limits default to None here so that the server's own defaults apply (see create_app).
    max_message_size: Annotated[
        int | None, typer.Option(min=1, help="Largest webhook body or WebSocket frame in bytes [1 MiB].")
    ] = None,
    max_connections: Annotated[
        int | None, typer.Option(min=1, help="Open WebSocket connections per worker [10000].")
    ] = None,
    max_calls_per_connection: Annotated[
        int | None, typer.Option(min=1, help="Calls one WebSocket connection may carry [1000].")
    ] = None,
    header_timeout: Annotated[
        float | None, typer.Option(min=0.001, help="Seconds a client gets to send its headers [10].")
    ] = None,
    body_timeout: Annotated[
        float | None, typer.Option(min=0.001, help="Seconds a client gets to send a webhook body [10].")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Serve /metrics on this port (of --host) instead of the app's."),
    ] = None,
    metrics_token: Annotated[
        bool, typer.Option(help="Require the token (Authorization: Bearer or X-API-TOKEN) on /metrics.")
    ] = False,
    otel: Annotated[
        bool | None,
        typer.Option(
            help="Trace calls with OpenTelemetry (the otel extra) [on when OTEL_* variables ask for traces]."
        ),
    ] = None,
    otel_content: Annotated[
        bool,
        typer.Option(
            envvar="AIFLOW_OTEL_CONTENT", help="Record phone numbers, the caller's words and tool arguments."
        ),
    ] = False,
) -> None:
    """Serve an assistant over HTTP (POST webhook) and WebSocket."""
    import uvicorn  # noqa: PLC0415

    from sipgate_ai_flow.cli.serve import ENV_OPTIONS, ENV_TARGET, uvicorn_ws_protocol  # noqa: PLC0415
    from sipgate_ai_flow.server.guard import guarded_http  # noqa: PLC0415
    from sipgate_ai_flow.target import load_target  # noqa: PLC0415

    try:
        assistant = load_target(target)  # fail here, readably, before uvicorn starts
    except AiFlowError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    if workers > 1 and reload:
        err.print("[bold red]error:[/] --reload and --workers cannot be combined")
        raise typer.Exit(2)
    options: dict[str, Any] = {
        "webhook_path": webhook_path,
        "websocket_path": ws_path,
        "shutdown_grace": shutdown_grace,
    }
    limits = {
        "max_message_size": max_message_size,
        "max_connections": max_connections,
        "max_calls_per_connection": max_calls_per_connection,
        "body_timeout": body_timeout,
    }
    options.update((name, value) for name, value in limits.items() if value is not None)
    if token:
        options["token"] = token
    options.update(
        _observability(
            metrics_port, metrics_token, otel, otel_content, secured=bool(token or assistant.token)
        )
    )
    if redis:
        from sipgate_ai_flow.cli.serve import check_redis  # noqa: PLC0415

        if problem := check_redis(redis):  # fail here, readably, before uvicorn starts
            err.print(f"[bold red]error:[/] --redis: {problem}")
            raise typer.Exit(2)
        options["redis_url"] = redis
    elif workers > 1 and type(assistant.store).__name__ == "MemoryStore":
        err.print(
            "[bold yellow]warning:[/] each worker keeps its own in-memory state; events of one call "
            "that reach different workers will not share it. Use --redis URL."
        )
    metrics_dir = contextlib.ExitStack()
    if (workers > 1 or metrics_port is not None) and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Every worker writes its metrics here; /metrics on any of them sums them up. Ours goes
        # when the server stops.
        made = tempfile.TemporaryDirectory(prefix="aiflow-metrics-", ignore_cleanup_errors=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir.enter_context(made)
    secured = bool(token or assistant.token)
    os.environ[ENV_TARGET] = target
    os.environ[ENV_OPTIONS] = json.dumps(options)
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::") else host
    err.print(f"[bold green]Serving[/] {target}")
    err.print(f"  webhook    http://{shown}:{port}{webhook_path}")
    err.print(f"  websocket  ws://{shown}:{port}{ws_path}")
    err.print(
        "  token      " + ("[green]required[/]" if secured else "[bold red]NOT SET[/] (anyone can call)")
    )
    err.print(f"  state      {'redis' if redis else 'in memory'}, {workers} worker(s)")
    if metrics_port is not None:
        _serve_metrics(metrics_dir, host, metrics_port)
        err.print(f"  metrics    http://{shown}:{metrics_port}/metrics")
    with metrics_dir:
        uvicorn.run(
            "sipgate_ai_flow.cli.serve:app_factory",
            factory=True,
            host=host,
            port=port,
            reload=reload,
            reload_dirs=[str(_source_dir(target))] if reload else None,
            log_level=log_level,
            # uvicorn formats every access line before the level filter drops it: no access log
            # where it would not be shown anyway.
            access_log=log_level.lower() in ("trace", "debug", "info"),
            http=guarded_http() if header_timeout is None else guarded_http(header_timeout),
            ws=uvicorn_ws_protocol(),
            # Frames up to our limit are read and dropped with the connection kept (D16); far larger
            # ones close it before they fill memory.
            ws_max_size=max(16 * 1024 * 1024, 2 * (max_message_size or 0)),
            workers=workers,
            timeout_graceful_shutdown=math.ceil(shutdown_grace) + 5,
        )


def _observability(
    metrics_port: int | None, metrics_token: bool, otel: bool | None, otel_content: bool, *, secured: bool
) -> dict[str, Any]:
    # The app options of the metrics and tracing flags, checked before uvicorn starts.
    from sipgate_ai_flow.otel import configured_by_env  # noqa: PLC0415 - imports no OpenTelemetry

    options: dict[str, Any] = {}
    if metrics_port is not None:
        options["metrics_elsewhere"] = True
    if metrics_token:
        if metrics_port is not None:
            err.print(
                "[bold red]error:[/] --metrics-token protects the app's /metrics; not with --metrics-port"
            )
            raise typer.Exit(2)
        if not secured:
            err.print("[bold red]error:[/] --metrics-token needs a token (--token or AIFLOW_TOKEN)")
            raise typer.Exit(2)
        options["metrics_token"] = True
    if otel is not None:
        options["otel"] = otel
    if otel_content:
        os.environ["AIFLOW_OTEL_CONTENT"] = "1"  # the workers read it
    if (otel or (otel is None and configured_by_env())) and (problem := _otel_missing()):
        err.print(f"[bold red]error:[/] --otel: {problem}")
        raise typer.Exit(2)
    return options


def _serve_metrics(stack: contextlib.ExitStack, host: str, port: int) -> None:
    # /metrics on a port of its own, served by this process from every worker's files.
    from sipgate_ai_flow.cli.serve import serve_metrics  # noqa: PLC0415

    try:
        stack.callback(serve_metrics(host, port))
    except OSError as exc:
        stack.close()
        err.print(f"[bold red]error:[/] --metrics-port: cannot listen on {host}:{port}: {exc.strerror}")
        raise typer.Exit(2) from None


def _otel_missing() -> str | None:
    # Said before uvicorn starts, not as a traceback from each worker.
    import importlib.util  # noqa: PLC0415

    for module in ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return "OpenTelemetry is not installed: pip install 'sipgate-ai-flow[otel]'"
    return None


def _source_dir(target: str) -> Path:
    location = target.rpartition(":")[0] or target
    if location.endswith(".py") or "/" in location:
        return Path(location).resolve().parent
    return Path.cwd()


@app.command()
def schema(
    kind: Annotated[Kind | None, typer.Argument(help="event or action; both when left out.")] = None,
) -> None:
    """Print the JSON Schema of events and/or actions."""
    from sipgate_ai_flow.protocol.codec import action_json_schema, event_json_schema  # noqa: PLC0415

    if kind is Kind.event:
        document: dict[str, Any] = event_json_schema()
    elif kind is Kind.action:
        document = action_json_schema()
    else:
        document = {"event": event_json_schema(), "action": action_json_schema()}
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


@app.command()
def validate(
    file: Annotated[str, typer.Argument(help="JSON file to check, or - for standard input.")],
    kind: Annotated[
        Kind | None,
        typer.Option("--kind", help="Treat it as an event or action (guessed otherwise)."),
    ] = None,
) -> None:
    """Check an event, an action or an array of actions; say what is wrong, field by field."""
    from sipgate_ai_flow.protocol.actions import ACTION_TYPES  # noqa: PLC0415
    from sipgate_ai_flow.protocol.codec import parse_event  # noqa: PLC0415
    from sipgate_ai_flow.protocol.events import UnknownEvent  # noqa: PLC0415
    from sipgate_ai_flow.protocol.session import DIRECTIONS  # noqa: PLC0415

    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"[bold red]error:[/] cannot read {file}: {exc}")
        raise typer.Exit(2) from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        _report_invalid(file, "not valid JSON", [("", str(exc))])
        raise typer.Exit(1) from None
    if kind is None:
        is_action = isinstance(document, list) or (
            isinstance(document, dict) and (document.get("type") in ACTION_TYPES or "session" not in document)
        )
        kind = Kind.action if is_action else Kind.event
    if kind is Kind.action:
        _validate_actions(file, document)
        return
    try:
        event = parse_event(text)
    except ProtocolError as exc:
        _report_invalid(file, exc.summary, [(e.path, e.message) for e in exc.errors])
        raise typer.Exit(1) from None
    if isinstance(event, UnknownEvent):
        out.print(f"[yellow]valid[/], but {event.type!r} is not a known event type (kept as UnknownEvent)")
    elif event.session.direction not in (None, *DIRECTIONS):
        shown = escape(repr(event.session.direction))
        out.print(f"[yellow]valid[/] {event.type} event, but session.direction {shown} is not a known value")
    else:
        out.print(f"[green]valid[/] {event.type} event")


def _validate_actions(file: str, document: object) -> None:
    """Check actions as the emulator checks a reply on the wire, session_id included."""
    from sipgate_ai_flow.testing.checks import check_action  # noqa: PLC0415

    raws = document if isinstance(document, list) else [document]
    rows: list[tuple[str, str]] = []
    names: list[str] = []
    for index, raw in enumerate(raws):
        where = f"[{index}]" if isinstance(document, list) else ""
        action, problems = check_action(raw, None)
        names += [action.type] if action is not None else []
        for problem in problems:
            details = problem.fields or [FieldError(problem.path, problem.message)]
            for field in details:
                path = ".".join(part for part in (where, field.path) if part).replace(".[", "[")
                rows.append((path, f"{field.message} ({problem.kind})"))
    context = (
        "checked as a reply on the wire, as the emulator checks it; a handler may leave session_id "
        "out, the SDK fills it in from the event"
    )
    if rows:
        _report_invalid(file, "invalid reply", rows)
        out.print(f"[dim]{context}[/]")
        raise typer.Exit(1)
    out.print(f"[green]valid[/] action{'s' if len(names) != 1 else ''}: {', '.join(names)}")


def _report_invalid(file: str, summary: str, rows: list[tuple[str, str]]) -> None:
    out.print(f"[bold red]{summary}[/] in {file}")
    table = Table("field", "problem", show_edge=False)
    for path, message in rows:
        table.add_row(path or "(document)", message)
    out.print(table)


TargetArg = Annotated[
    str, typer.Option("--target", "-t", help="module:attr, file.py:attr, http(s):// webhook or ws(s):// URL.")
]
TokenOpt = Annotated[
    str | None, typer.Option(envvar="AIFLOW_TOKEN", help="Shared secret sent as X-API-TOKEN.")
]
StrictOpt = Annotated[bool, typer.Option(help="Fail a call on its first violation.")]
DeadlineOpt = Annotated[float, typer.Option(help="Reply budget in seconds; slower replies are violations.")]


def _emulator(target: str, token: str | None, **options: Any) -> Any:
    from sipgate_ai_flow.testing.emulator import Emulator  # noqa: PLC0415
    from sipgate_ai_flow.testing.transports import resolve_target  # noqa: PLC0415

    try:
        return Emulator(resolve_target(target), token=token, **options)
    except AiFlowError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None


@app.command("test")
def scenario_tests(
    paths: Annotated[list[Path], typer.Argument(help="Scenario files (YAML/JSON) or folders of them.")],
    target: TargetArg,
    token: TokenOpt = None,
    strict: StrictOpt = False,
    deadline: DeadlineOpt = 1.0,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Print every call's transcript and every step's latency.")
    ] = False,
    json_path: Annotated[
        str | None,
        typer.Option(
            "--json",
            metavar="PATH",
            help="Write a JSON report for CI to PATH (- for standard output; the summary then goes to "
            "standard error).",
        ),
    ] = None,
    repeat: Annotated[
        int,
        typer.Option(
            min=1,
            help="Run every scenario this many times: latency over all runs; it passes if every run does.",
        ),
    ] = 1,
) -> None:
    """Run scenario files against an assistant; exit 1 if any scenario fails."""
    import asyncio  # noqa: PLC0415

    from sipgate_ai_flow.cli.emulate import print_results  # noqa: PLC0415
    from sipgate_ai_flow.testing.report import json_report  # noqa: PLC0415
    from sipgate_ai_flow.testing.scenario import load_scenarios, run_scenarios  # noqa: PLC0415
    from sipgate_ai_flow.testing.transports import describe_target  # noqa: PLC0415

    try:
        scenarios = load_scenarios(paths)
    except ProtocolError as exc:
        _report_invalid(exc.summary.partition(":")[0], exc.summary, [(e.path, e.message) for e in exc.errors])
        raise typer.Exit(2) from None
    emulator = _emulator(target, token, strict=strict, deadline=deadline)
    runs = [scenario for scenario in scenarios for _ in range(repeat)]
    results = asyncio.run(run_scenarios(runs, emulator))
    # With the report on standard output, the summary goes to standard error: stdout stays JSON.
    print_results(results, err if json_path == "-" else out, verbose=verbose)
    if json_path is not None:
        report = json.dumps(json_report(results, target=describe_target(target)), indent=2) + "\n"
        try:
            if json_path == "-":
                sys.stdout.write(report)
            else:
                Path(json_path).write_text(report, encoding="utf-8")
        except OSError as exc:
            err.print(
                f"[bold red]error:[/] cannot write the report to {escape(json_path)}: {exc.strerror or exc}"
            )
            raise typer.Exit(2) from None
    raise typer.Exit(0 if all(r.passed for r in results) else 1)


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="A recording made with `aiflow call --record`.")],
    target: TargetArg,
    token: TokenOpt = None,
    deadline: DeadlineOpt = 1.0,
) -> None:
    """Play a recorded call's caller side again; exit 1 where the assistant now answers differently."""
    import asyncio  # noqa: PLC0415

    from sipgate_ai_flow.cli.emulate import print_replay  # noqa: PLC0415
    from sipgate_ai_flow.testing.record import load_recording  # noqa: PLC0415
    from sipgate_ai_flow.testing.record import replay as replay_recording  # noqa: PLC0415

    try:
        recording = load_recording(file)
    except (OSError, ProtocolError) as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    result = asyncio.run(replay_recording(recording, _emulator(target, token, deadline=deadline)))
    print_replay(result, out)
    raise typer.Exit(0 if result.same else 1)


@app.command()
def call(
    target: Annotated[str, typer.Argument(help="module:attr, file.py:attr, http(s):// or ws(s):// URL.")],
    token: TokenOpt = None,
    record: Annotated[
        Path | None, typer.Option(help="Save the call as JSON Lines, for `aiflow replay`.")
    ] = None,
    script: Annotated[
        Path | None, typer.Option(help="Play the caller's lines from a file instead of the terminal.")
    ] = None,
    raw: Annotated[bool, typer.Option(help="Show the raw events and actions.")] = False,
    strict: StrictOpt = False,
    deadline: DeadlineOpt = 1.0,
    direction: Annotated[str, typer.Option(help="inbound or outbound.")] = "inbound",
    from_number: Annotated[str | None, typer.Option("--from", help="Caller's number.")] = None,
    to_number: Annotated[str | None, typer.Option("--to", help="Called number.")] = None,
    transfer_answers: Annotated[bool, typer.Option(help="Whether transfer targets answer.")] = True,
    sms_failure: Annotated[str | None, typer.Option(help="Make every SMS fail with this reason.")] = None,
    wpm: Annotated[float, typer.Option(help="Speaking rate of the emulated TTS, words per minute.")] = 160,
) -> None:
    """Call an assistant from the terminal: type to speak, /help for commands.

    With a --script, or when standard input is not a terminal, the caller's lines are read from
    it and the call runs in virtual time (instant), printing the transcript.
    """
    import asyncio  # noqa: PLC0415

    from sipgate_ai_flow.cli.emulate import CallSetup, run_call  # noqa: PLC0415

    if direction not in ("inbound", "outbound"):
        err.print("[bold red]error:[/] --direction is inbound or outbound")
        raise typer.Exit(2)
    lines: list[str] | None = None
    if script is not None:
        lines = script.read_text(encoding="utf-8").splitlines()
    elif not sys.stdin.isatty():
        lines = sys.stdin.read().splitlines()
    emulator = _emulator(
        target, token, strict=strict, deadline=deadline, realtime=lines is None, words_per_minute=wpm
    )
    setup = CallSetup(direction, from_number, to_number, transfer_answers, sms_failure)
    code = asyncio.run(run_call(emulator, setup, out, script=lines, raw=raw, record=record))
    raise typer.Exit(code)


@app.command()
def console(
    target: Annotated[str, typer.Argument(help="module:attr, file.py:attr, http(s):// or ws(s):// URL.")],
    http: Annotated[
        bool, typer.Option("--http", help="Serve a module target and call it by webhook.")
    ] = False,
    ws: Annotated[
        bool, typer.Option("--ws", help="Serve a module target and call it over WebSocket.")
    ] = False,
    host: Annotated[str, typer.Option(help="Interface the page is served on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the page.")] = 8765,
    browser: Annotated[bool, typer.Option(help="Open the page in the browser.")] = True,
    token: TokenOpt = None,
    deadline: DeadlineOpt = 1.0,
    wpm: Annotated[float, typer.Option(help="Speaking rate of the emulated TTS, words per minute.")] = 160,
) -> None:
    """Call an assistant from a web page: talk, hear, see every event and action, record the call.

    A module target is called in this process, or with --http / --ws served on a free local port
    and called over that transport; a URL target is called at that URL.
    """
    import asyncio  # noqa: PLC0415

    from sipgate_ai_flow.cli.serve import uvicorn_ws_protocol  # noqa: PLC0415
    from sipgate_ai_flow.console import run_console  # noqa: PLC0415
    from sipgate_ai_flow.testing.transports import resolve_target  # noqa: PLC0415

    try:
        resolved = resolve_target(target)
    except AiFlowError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    if http and ws:
        err.print("[bold red]error:[/] choose one of --http and --ws")
        raise typer.Exit(2)
    if isinstance(resolved, str) and (http or ws):
        err.print(
            "[bold red]error:[/] a URL target is called at its URL; --http and --ws serve a module target"
        )
        raise typer.Exit(2)

    def say(line: str) -> None:
        err.print(escape(line), soft_wrap=True, highlight=False)

    try:
        asyncio.run(
            run_console(
                resolved,
                via="http" if http else "ws" if ws else "in-process",
                host=host,
                port=port,
                open_browser=browser,
                token=token,
                deadline=deadline,
                words_per_minute=wpm,
                ws_protocol=uvicorn_ws_protocol(),
                say=say,
                name=target,
            )
        )
    except OSError as exc:  # the port is taken, or the host is not an interface here
        err.print(f"[bold red]error:[/] cannot serve the console on {host}:{port}: {exc.strerror or exc}")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass  # Ctrl-C: uvicorn has shut down; the signal comes back once it let go of it


@app.command()
def dial(
    to: Annotated[str, typer.Argument(help="The number to call, E.164 with or without '+'.")],
    flow_id: Annotated[
        str | None, typer.Option(envvar="AIFLOW_FLOW_ID", help="The AI flow that calls (its id).")
    ] = None,
    billing_device: Annotated[
        str | None,
        typer.Option(envvar="AIFLOW_BILLING_DEVICE", help="Billing device suffix from sipgate, e.g. e2."),
    ] = None,
    api_token: Annotated[
        str | None,
        typer.Option(envvar="AIFLOW_API_TOKEN", help="sipgate API token (Bearer).", show_default=False),
    ] = None,
    api_url: Annotated[
        str | None, typer.Option(envvar="AIFLOW_API_URL", help="API base URL [default: public API].")
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for the API.")] = 10.0,
) -> None:
    """Have an AI flow call a phone number (outbound call; needs approval by sipgate)."""
    import asyncio  # noqa: PLC0415

    from sipgate_ai_flow.client.outbound import AiFlowApi  # noqa: PLC0415
    from sipgate_ai_flow.errors import ApiError  # noqa: PLC0415

    if not flow_id or not billing_device or not api_token:
        missing = [
            name
            for name, value in (
                ("--flow-id / $AIFLOW_FLOW_ID", flow_id),
                ("--billing-device / $AIFLOW_BILLING_DEVICE", billing_device),
                ("--api-token / $AIFLOW_API_TOKEN", api_token),
            )
            if not value
        ]
        err.print(f"[bold red]error:[/] missing {', '.join(missing)}")
        raise typer.Exit(2)
    try:
        api = AiFlowApi(api_token, base_url=api_url, timeout=timeout)
        dialed = asyncio.run(api.dial(to, ai_flow_id=flow_id, billing_device=billing_device))
    except ValueError as exc:  # arguments that cannot be right (ProtocolError is one)
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    except ApiError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(1) from None
    shown = f"{dialed.to_phone_number} from flow {dialed.ai_flow_id}"
    out.print(f"[green]calling[/] {shown} (HTTP {dialed.status})")
