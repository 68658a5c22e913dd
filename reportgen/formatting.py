"""How numbers are written: counts, millions, percentages and bytes, the one home of each rule.

The HTML and Markdown pages (as Jinja filters), the terminal printout and the
charts all format through these functions, so the same figure reads the same
everywhere. Pure Python: nothing here imports torch, pandas or matplotlib.

Bytes: ``GB`` is the decimal unit (10^9 bytes), what every label "GB" means;
``GIB`` is the binary one (2^30 bytes), used for GPU sizes and labelled "GiB".
"""

from __future__ import annotations

KB = 10**3
MB = 10**6
GB = 10**9  # decimal: every size labelled "GB"
GIB = 2**30  # binary: GPU memory sizes, labelled "GiB"

# Count units, largest first: 1.24B parameters, a 50M axis tick.
COUNT_UNITS = (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3))
# Decimal byte units, GB at most so GPU sizes compare.
BYTE_UNITS = (("GB", 1e9), ("MB", 1e6), ("KB", 1e3))


def percent(part: int, whole: int) -> float | None:
    """part as a percentage of whole (1.02 means 1.02 %), None when whole is 0."""
    return 100.0 * part / whole if whole else None


def millions(count: int) -> float:
    """A parameter count in millions, rounded to two places as the walk-through prints it."""
    return round(count / 1e6, 2)


def count(value: int | None) -> str:
    """An exact count with thousands separators: 3,407,872 ("-" for none)."""
    return "-" if value is None else f"{value:,}"


def pct(value: float | None) -> str:
    """A percentage, two decimals as the walk-through prints them, three below 0.1 %: 1.02%, 0.040%, "-"."""
    if value is None:
        return "-"
    return f"{value:.2f}%" if value >= 0.1 or value == 0 else f"{value:.3f}%"


def mega(value: float | None) -> str:
    """Millions (already rounded by millions()) with their unit: 67.11M ("-" for none)."""
    return "-" if value is None else f"{value:.2f}M"


def human_count(count: int) -> str:
    """A parameter count with a readable unit: 973.08M, 1.24B, 294.91K."""
    for unit, scale in COUNT_UNITS:
        if abs(count) >= scale:
            return f"{count / scale:.2f}{unit}"
    return str(count)


def human(value: int | None) -> str:
    """human_count, "-" for none."""
    return "-" if value is None else human_count(value)


def axis_count(value: float) -> str:
    """A chart's axis tick in count units without trailing zeros: 50M, 1.5B, 300K."""
    for unit, scale in COUNT_UNITS:
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:g}"


def human_bytes(count: int) -> str:
    """A size in bytes with a readable decimal unit, GB at most so GPU sizes compare: 2.47 GB, 45.09 MB."""
    for unit, scale in BYTE_UNITS:
        if abs(count) >= scale:
            return f"{count / scale:,.2f} {unit}"
    return f"{count} B"


def gb(value: int | None) -> str:
    """human_bytes, "-" for none."""
    return "-" if value is None else human_bytes(value)


def gb_figure(count: float) -> str:
    """A size in decimal GB as a bare figure for a column headed "GB", as human_bytes writes GB: 4,870.24."""
    return f"{count / GB:,.2f}"


def gib_figure(count: float) -> str:
    """A size in GiB (2^30 bytes), one decimal, for memory budgets: 8.0 (the caller writes "GiB")."""
    return f"{count / GIB:.1f}"


def signed(value: int) -> str:
    """A difference with its sign and thousands separators: +12,582,912, -42,467,328, 0."""
    return f"{value:+,}" if value else "0"


def yes_no(value: bool) -> str:
    return "yes" if value else "no"
