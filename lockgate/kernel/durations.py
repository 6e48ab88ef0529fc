"""The one duration grammar every Lockgate option uses: a count and a unit, ``90s`` … ``2w``.

Units: ``s`` seconds, ``m`` minutes, ``h`` hours, ``d`` days, ``w`` weeks; the count is
1 to 6 digits. Anything else is refused with :class:`DurationInvalid` naming the value.
"""

from __future__ import annotations

import re

from lockgate.kernel.errors import DurationInvalid

__all__ = ["DURATION_HELP", "DurationInvalid", "parse_duration_us"]

DURATION_HELP = "a number and s/m/h/d/w, e.g. 90s, 30m, 24h, 7d, 2w"
_DURATION = re.compile(r"^(\d{1,6})([smhdw])$")
_UNIT_US = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000, "w": 604_800_000_000}


def parse_duration_us(raw: str, what: str = "duration") -> int:
    """Microseconds in ``raw``; raises :class:`DurationInvalid` (naming ``what``) otherwise."""
    m = _DURATION.match(raw.strip())
    if not m:
        raise DurationInvalid(f"{what}={raw[:20]!r} is not a duration; use {DURATION_HELP}")
    return int(m.group(1)) * _UNIT_US[m.group(2)]
