"""The one base class of mistakes a user can fix (parameters, recordings, services).

Entry points (``biotrain`` and every stage) print such an error as one message and exit 2;
anything else is a bug and keeps its traceback. ``--debug`` or ``BIOTRAIN_DEBUG=1`` shows the
traceback of a user error too.
"""

from __future__ import annotations

import os

DEBUG_ENV = "BIOTRAIN_DEBUG"


class UserError(ValueError):
    """A problem in the user's parameters, recordings or services, with what is allowed."""


class TrackingError(UserError):
    """The configured MLflow tracking store cannot be reached or written."""


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")
