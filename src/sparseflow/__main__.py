"""``python -m sparseflow`` runs the command line."""

from sparseflow.cli import main

main()
