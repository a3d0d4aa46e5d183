"""The ``sparseflow`` command line. :func:`main` is the console entry point."""

from sparseflow.cli.main import app, main

__all__ = ["app", "main"]
