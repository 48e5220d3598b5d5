"""``python -m sipgate_ai_flow`` runs the ``aiflow`` command line."""

from sipgate_ai_flow.cli import main

main()
