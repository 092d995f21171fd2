"""The line a backfill prints about its rejected lines, naming where they are so the writer can be fixed. Pure."""

from __future__ import annotations

from monitor.models import IngestResult

__all__ = ["rejected_lines"]


def rejected_lines(result: IngestResult) -> str | None:
    """``rejected 7 lines: bad_json at lines 5, 10, 11, 12, 13 and 1 more; missing_order_id at line 8``, or
    None when nothing was rejected. Reasons come in the order of their first rejected line; a reason whose lines
    are not known is given with its count."""
    if not result.rejected:
        return None

    def first(reason: str) -> tuple[int, str]:
        numbers = result.rejected_lines.get(reason, ())
        return (numbers[0] if numbers else 1 << 62, reason)

    said = []
    for reason in sorted(result.reasons, key=first):
        count = result.reasons[reason]
        numbers = result.rejected_lines.get(reason, ())
        if not numbers:
            said.append(f"{reason} {count}")
            continue
        where = f"at line{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))}"
        more = count - len(numbers)
        said.append(f"{reason} {where}" + (f" and {more} more" if more > 0 else ""))
    return f"rejected {result.rejected} line{'s' if result.rejected != 1 else ''}: {'; '.join(said)}"
