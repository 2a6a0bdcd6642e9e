"""``tseg serve``: a local web demo (standard-library HTTP server, one HTML page)."""

from .app import DemoApp, load_model, make_server, serve

__all__ = ["DemoApp", "load_model", "make_server", "serve"]
