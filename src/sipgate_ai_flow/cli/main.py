"""``aiflow``: serve an assistant, print the protocol's JSON Schema, validate JSON documents."""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sipgate_ai_flow.errors import AiFlowError, ProtocolError

app = typer.Typer(
    name="aiflow",
    help="Build, serve and check sipgate AI Flow assistants.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
out = Console()


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
) -> None:
    """Serve an assistant over HTTP (POST webhook) and WebSocket."""
    import uvicorn  # noqa: PLC0415

    from sipgate_ai_flow.cli.serve import ENV_OPTIONS, ENV_TARGET, uvicorn_ws_protocol  # noqa: PLC0415
    from sipgate_ai_flow.cli.target import load_target  # noqa: PLC0415

    try:
        assistant = load_target(target)  # fail here, readably, before uvicorn starts
    except AiFlowError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    options: dict[str, Any] = {"webhook_path": webhook_path, "websocket_path": ws_path}
    if token:
        options["token"] = token
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
    uvicorn.run(
        "sipgate_ai_flow.cli.serve:app_factory",
        factory=True,
        host=host,
        port=port,
        reload=reload,
        reload_dirs=[str(_source_dir(target))] if reload else None,
        log_level=log_level,
        ws=uvicorn_ws_protocol(),
    )


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
    from sipgate_ai_flow.protocol.codec import parse_actions, parse_event  # noqa: PLC0415
    from sipgate_ai_flow.protocol.events import UnknownEvent  # noqa: PLC0415

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
    try:
        if kind is Kind.event:
            event = parse_event(text)
            if isinstance(event, UnknownEvent):
                out.print(
                    f"[yellow]valid[/], but {event.type!r} is not a known event type (kept as UnknownEvent)"
                )
            else:
                out.print(f"[green]valid[/] {event.type} event")
        else:
            actions = parse_actions(text)
            names = ", ".join(a.type for a in actions)
            out.print(f"[green]valid[/] action{'s' if len(actions) != 1 else ''}: {names}")
    except ProtocolError as exc:
        _report_invalid(file, exc.summary, [(e.path, e.message) for e in exc.errors])
        raise typer.Exit(1) from None


def _report_invalid(file: str, summary: str, rows: list[tuple[str, str]]) -> None:
    out.print(f"[bold red]{summary}[/] in {file}")
    table = Table("field", "problem", show_edge=False)
    for path, message in rows:
        table.add_row(path or "(document)", message)
    out.print(table)
