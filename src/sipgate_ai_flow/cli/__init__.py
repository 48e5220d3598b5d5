"""The ``aiflow`` command line. Imports stay lazy so ``aiflow --help`` starts fast."""

from __future__ import annotations

__all__ = ["main"]


def main() -> None:
    """Run the ``aiflow`` command."""
    from sipgate_ai_flow.cli.main import app  # noqa: PLC0415

    app()
