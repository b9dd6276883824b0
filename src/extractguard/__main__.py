"""``python -m extractguard`` runs the CLI."""

from extractguard.cli import main

main()
