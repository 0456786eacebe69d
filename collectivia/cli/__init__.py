"""The ``collectivia`` command line (top floor): ``main`` holds the app, the other modules its command groups."""

from collectivia.cli.main import app

__all__ = ["app"]
