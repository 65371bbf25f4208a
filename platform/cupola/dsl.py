"""A small, safe expression language for feature transforms.

Expressions use Python's surface syntax (`log1p(distance_km) * 2`, `if_else(x > 3, 1, 0)`)
but are never evaluated by Python: `ast.parse` gives a syntax tree, which is converted to
cupola's own nodes, allowing only column names, literals, arithmetic, comparisons, boolean
logic and the functions in `FUNCTIONS`. Evaluation is vectorized over pandas columns, so the
same code runs on a million-row batch and on a one-row frame.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


class ExpressionError(ValueError):
    """An expression is malformed or uses something the language does not have."""


@dataclass(frozen=True)
class Column:
    name: str


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Call:
    function: str
    args: tuple["Node", ...]


Node = Column | Literal | Call


def _as_series(value: Any) -> pd.Series:
    return value if isinstance(value, pd.Series) else pd.Series(value)


def _timestamps(value: Any) -> pd.Series:
    series = _as_series(value)
    if not pd.api.types.is_datetime64_any_dtype(series):
        raise ExpressionError("expects a timestamp column")
    return series


def _bucketize(value: Any, edges: Any) -> Any:
    if not isinstance(edges, list | tuple) or not edges:
        raise ExpressionError("bucketize(x, [edges]) needs a non-empty list of numbers")
    buckets = np.searchsorted(np.asarray(edges, dtype="float64"), np.asarray(value, dtype="float64"), side="right")
    return pd.Series(buckets, index=getattr(value, "index", None)).astype("int64")


def _minutes_between(start: Any, end: Any) -> Any:
    return (_timestamps(end) - _timestamps(start)).dt.total_seconds() / 60.0


def _if_else(condition: Any, when_true: Any, when_false: Any) -> Any:
    result = np.where(np.asarray(condition, dtype=bool), when_true, when_false)
    return pd.Series(result, index=getattr(condition, "index", None))


def _category_code(value: Any, categories: Any) -> Any:
    if not isinstance(categories, list | tuple) or not categories:
        raise ExpressionError("category_code(x, [categories]) needs a non-empty list")
    codes = pd.Categorical(_as_series(value).astype(str), categories=[str(c) for c in categories]).codes.astype("float64")
    codes[codes < 0] = np.nan
    return pd.Series(codes, index=getattr(value, "index", None))


@dataclass(frozen=True)
class Function:
    arity: int
    implementation: Callable[..., Any]
    doc: str


FUNCTIONS: dict[str, Function] = {
    "log1p": Function(1, np.log1p, "natural log of 1 + x"),
    "abs": Function(1, np.abs, "absolute value"),
    "sqrt": Function(1, np.sqrt, "square root"),
    "clip": Function(3, lambda x, lo, hi: np.clip(x, lo, hi), "clip(x, lo, hi)"),
    "fill_null": Function(2, lambda x, v: _as_series(x).fillna(v), "fill_null(x, value)"),
    "is_null": Function(1, lambda x: _as_series(x).isna(), "true where x is missing"),
    "if_else": Function(3, _if_else, "if_else(condition, a, b)"),
    "bucketize": Function(2, _bucketize, "bucketize(x, [e1, e2, ...]) -> index of the bucket"),
    "hour": Function(1, lambda ts: _timestamps(ts).dt.hour.astype("int64"), "hour of day 0-23 (UTC)"),
    "weekday": Function(1, lambda ts: _timestamps(ts).dt.day_of_week.astype("int64"), "day of week, Monday=0"),
    "minutes_between": Function(2, _minutes_between, "minutes_between(start_ts, end_ts)"),
    "category_code": Function(2, _category_code, "category_code(x, ['a', 'b']) -> 0, 1, ... (missing when not listed)"),
    "one_hot": Function(2, lambda x, v: (_as_series(x).astype(str) == str(v)).astype("float64"), "one_hot(x, 'a') -> 1.0 where x == 'a' else 0.0"),
}

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_OPERATORS: dict[str, Callable[..., Any]] = {
    **{f"__{fn.__name__}__": fn for fn in _BINARY.values()},
    **{f"__{fn.__name__}__": fn for fn in _COMPARE.values()},
    "__neg__": operator.neg,
    "__not__": lambda x: ~_as_series(x).astype(bool),
    "__and__": lambda a, b: _as_series(a).astype(bool) & _as_series(b).astype(bool),
    "__or__": lambda a, b: _as_series(a).astype(bool) | _as_series(b).astype(bool),
}


def parse(expression: str) -> Node:
    """Parse an expression into cupola nodes; raises ExpressionError naming what is not allowed."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as error:
        raise ExpressionError(f"syntax error in {expression!r}: {error.msg}") from None
    return _convert(tree.body, expression)


def _convert(node: ast.AST, source: str) -> Node:
    if isinstance(node, ast.Name):
        return Column(node.id)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return Column(f"{node.value.id}__{node.attr}")  # `group.feature` names a joined feature column
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str | bool | type(None)):
        return Literal(node.value)
    if isinstance(node, ast.List):
        values = [_convert(element, source) for element in node.elts]
        if not all(isinstance(value, Literal) for value in values):
            raise ExpressionError(f"lists may hold only literal numbers in {source!r}")
        return Literal([value.value for value in values if isinstance(value, Literal)])
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return Call(f"__{_BINARY[type(node.op)].__name__}__", (_convert(node.left, source), _convert(node.right, source)))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return Call("__neg__", (_convert(node.operand, source),))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return Call("__not__", (_convert(node.operand, source),))
    if isinstance(node, ast.BoolOp):
        name = "__and__" if isinstance(node.op, ast.And) else "__or__"
        result = _convert(node.values[0], source)
        for value in node.values[1:]:
            result = Call(name, (result, _convert(value, source)))
        return result
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
        name = f"__{_COMPARE[type(node.ops[0])].__name__}__"
        return Call(name, (_convert(node.left, source), _convert(node.comparators[0], source)))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        function = FUNCTIONS.get(node.func.id)
        if function is None:
            known = ", ".join(sorted(FUNCTIONS))
            raise ExpressionError(f"unknown function {node.func.id!r} in {source!r}; known functions: {known}")
        if len(node.args) != function.arity:
            raise ExpressionError(
                f"{node.func.id}() takes {function.arity} argument(s), got {len(node.args)} in {source!r}: {function.doc}"
            )
        return Call(node.func.id, tuple(_convert(arg, source) for arg in node.args))
    fragment = ast.get_source_segment(source, node) or type(node).__name__
    raise ExpressionError(
        f"{fragment!r} is not allowed in {source!r}: use column names, numbers, + - * / ** %, comparisons, "
        "and/or/not and the functions " + ", ".join(sorted(FUNCTIONS))
    )


def columns(node: Node) -> set[str]:
    """The input columns an expression reads."""
    if isinstance(node, Column):
        return {node.name}
    if isinstance(node, Call):
        return set().union(*(columns(arg) for arg in node.args)) if node.args else set()
    return set()


def evaluate(node: Node, frame: Mapping[str, Any]) -> Any:
    """Evaluate vectorized over the columns of `frame` (a DataFrame or a dict of arrays)."""
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Column):
        if node.name not in frame:
            raise ExpressionError(f"unknown column {node.name!r}")
        return frame[node.name]
    args = [evaluate(arg, frame) for arg in node.args]
    if node.function in _OPERATORS:
        return _OPERATORS[node.function](*args)
    return FUNCTIONS[node.function].implementation(*args)
