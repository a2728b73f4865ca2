"""The command line: `syncer ...` (main.py)."""

from syncer.cli.main import main

__all__ = ["main"]
