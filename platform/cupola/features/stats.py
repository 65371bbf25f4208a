"""Column statistics, computed per shard with pyarrow and merged exactly.

Numeric columns keep count, nulls, sum, sum of squares, min and max (mean and std derive
from them); other columns keep their most frequent values. The same summaries serve the
registry now and drift checks later.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

TOP_VALUES = 10


def partial_stats(table: pa.Table) -> dict[str, dict[str, Any]]:
    """Mergeable summaries of every column of one shard."""
    summaries: dict[str, dict[str, Any]] = {}
    for name in table.column_names:
        column = table.column(name)
        summary: dict[str, Any] = {"count": len(column), "nulls": column.null_count}
        kind = column.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind):
            values = pc.cast(column, pa.float64())
            valid = pc.drop_null(values)
            finite = pc.filter(valid, pc.is_finite(valid)) if len(valid) else valid
            summary.update(
                kind="numeric",
                sum=pc.sum(finite).as_py() or 0.0,
                sumsq=pc.sum(pc.multiply(finite, finite)).as_py() or 0.0,
                n=len(finite),
                min=pc.min(finite).as_py() if len(finite) else None,
                max=pc.max(finite).as_py() if len(finite) else None,
            )
        elif pa.types.is_timestamp(kind):
            summary.update(kind="timestamp", min=_iso(pc.min(column).as_py()), max=_iso(pc.max(column).as_py()))
        else:
            counts = pc.value_counts(pc.drop_null(column)).to_pylist() if len(column) else []
            summary.update(kind="categorical", top={str(item["values"]): item["counts"] for item in counts})
        summaries[name] = summary
    return summaries


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def merge_stats(parts: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Combine shard summaries into one per column, with mean/std/top values resolved."""
    merged: dict[str, dict[str, Any]] = {}
    for part in parts:
        for name, summary in part.items():
            into = merged.setdefault(name, {"kind": summary["kind"], "count": 0, "nulls": 0})
            into["count"] += summary["count"]
            into["nulls"] += summary["nulls"]
            if summary["kind"] == "numeric":
                for key in ("sum", "sumsq", "n"):
                    into[key] = into.get(key, 0) + summary[key]
                into["min"] = _pick(min, into.get("min"), summary["min"])
                into["max"] = _pick(max, into.get("max"), summary["max"])
            elif summary["kind"] == "timestamp":
                into["min"] = _pick(min, into.get("min"), summary["min"])
                into["max"] = _pick(max, into.get("max"), summary["max"])
            else:
                into.setdefault("top", Counter()).update(summary["top"])
    return {name: _finish(summary) for name, summary in merged.items()}


def _pick(choose: Any, a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else choose(a, b)


def _finish(summary: dict[str, Any]) -> dict[str, Any]:
    result = {key: summary[key] for key in ("kind", "count", "nulls")}
    if summary["kind"] == "numeric":
        n = summary.get("n", 0)
        mean = summary["sum"] / n if n else None
        variance = (summary["sumsq"] - n * mean * mean) / (n - 1) if n > 1 and mean is not None else None
        result.update(
            mean=mean,
            std=math.sqrt(max(variance, 0.0)) if variance is not None else None,
            min=summary["min"],
            max=summary["max"],
        )
    elif summary["kind"] == "timestamp":
        result.update(min=summary["min"], max=summary["max"])
    else:
        top = summary.get("top", Counter())
        result.update(distinct=len(top), top=dict(Counter(top).most_common(TOP_VALUES)))
    return result
