"""Shared connection module: URLs, engines, sessions, health, local server."""
