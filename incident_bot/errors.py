"""Errors that the console script reports as one line, whichever layer raises them.

This module imports nothing: the CLI's error boundary loads it before it knows which command runs, and
``incident-bot --help`` must not pay for settings, SQLAlchemy or pydantic (start-up time).
"""

from __future__ import annotations


class ConfigError(Exception):
    """A setting is missing or malformed. The message is one line that names it."""
