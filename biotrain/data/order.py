"""Natural order of MOABB's session, run and folder names ("2" before "10", "0train" before "1test")."""

from __future__ import annotations

import re


def natural_key(value, ignore_case: bool = False) -> list:
    """Sort key splitting digits out as numbers; ``ignore_case`` for file names."""
    text = str(value).lower() if ignore_case else str(value)
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]
