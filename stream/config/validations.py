"""Wallaroo-style validations: named polars expressions evaluated on every event.

A validation is a name plus a polars expression written in Python syntax. An event is *anomalous*
for a validation when the expression evaluates to ``True`` for it (``False`` and null are not
anomalous). Every evaluated batch gets ``anomaly.count`` (how many validations returned ``True``)
and one boolean ``anomaly.<name>`` column per validation.

Expressions are never ``eval``-ed: :func:`parse_expression` parses the text with
``ast.parse(mode="eval")`` and interprets the syntax tree against an explicit allowlist (see
``_PL_FUNCTIONS``, ``_EXPR_METHODS`` and ``_NAMESPACE_METHODS``), building the ``pl.Expr`` itself.
Anything outside the allowlist raises :class:`ValidationError` naming the construct and its
position (0-based character offset into the text).

Choices (documented for the README):

* ``.list.get(i)`` defaults to ``null_on_oob=True`` (the polars 0.18 behaviour Wallaroo users
  know): an out-of-range index yields null, i.e. "not anomalous", instead of failing the batch.
  Pass ``null_on_oob=False`` explicitly to get the strict polars behaviour.
* Column aggregations (``mean()``, ``len()``, ``sum()`` on a whole column) are not allowed: their
  value would depend on how events happen to be batched. Per-event list aggregations
  (``.list.mean()`` ...) are allowed.
* ``.str.contains`` accepts a regex only when the pattern has no regex metacharacters (it is then
  matched literally), or any pattern with ``literal=True``.
* A run-time failure of one validation on one batch (missing column, wrong type, strict cast
  failure, non-boolean result) makes that validation all ``False`` for the batch and is reported in
  :attr:`ValidationResult.errors`; other validations are unaffected and nothing raises.

Example::

    >>> import polars as pl
    >>> vs = ValidationSet([
    ...     Validation.create("fraud", 'pl.col("out.dense_1").list.get(0) > 0.9'),
    ...     Validation.create("too_low", 'pl.col("out.dense_1").list.get(0) < 0.05'),
    ... ])
    >>> df = pl.DataFrame({"out.dense_1": [[0.98], [0.5], [0.001]]})
    >>> result = vs.evaluate(df)
    >>> result.frame.to_dicts()[0]
    {'anomaly.count': 1, 'anomaly.fraud': True, 'anomaly.too_low': False}
    >>> failure_counts(result)
    {'fraud': 1, 'too_low': 1, '__any__': 2}
    >>> parse_validation('minimum_sales = pl.col("in.sales_count").list.min() < 500')[0]
    'minimum_sales'
"""

from __future__ import annotations

import ast
import operator
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import polars as pl
from polars.exceptions import PanicException

__all__ = [
    "ANOMALY_COUNT_COLUMN",
    "ANOMALY_PREFIX",
    "MAX_EXPRESSION_CHARS",
    "MAX_EXPRESSION_DEPTH",
    "MAX_EXPRESSION_NODES",
    "Validation",
    "ValidationError",
    "ValidationResult",
    "ValidationSet",
    "failure_counts",
    "parse_expression",
    "parse_validation",
    "validate_name",
]

ANOMALY_PREFIX: Final = "anomaly."
ANOMALY_COUNT_COLUMN: Final = "anomaly.count"
MAX_EXPRESSION_CHARS: Final = 4096
MAX_EXPRESSION_NODES: Final = 1000
MAX_EXPRESSION_DEPTH: Final = 100

_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_RESERVED_NAMES: Final = frozenset({"count"})
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1
_REGEX_META: Final = re.compile(r"[\\.^$|?*+()\[\]{}]")
_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")


class ValidationError(ValueError):
    """A validation name or expression was rejected.

    ``reason`` is the message without position; ``position`` is the 0-based character offset of
    the offending construct in the text that was parsed (``None`` when not tied to a place).
    """

    def __init__(self, reason: str, position: int | None = None) -> None:
        self.reason = reason
        self.position = position
        super().__init__(reason if position is None else f"{reason} (at position {position})")


# --------------------------------------------------------------------------------------------------
# Allowlist
# --------------------------------------------------------------------------------------------------

Const = int | float | str | bool | None


class _Kind:
    """How one argument is checked and converted."""

    EXPR = "an expression or a constant"
    INT = "an integer constant"
    INT_OR_EXPR = "an integer constant or an expression"
    NUMBER = "a number constant"
    NUMBER_OR_EXPR_OR_NONE = "a number constant, an expression or None"
    BOOL = "True or False"
    STR = "a string literal"
    DTYPE = "a polars data type such as pl.Float64"
    SEQ_OR_EXPR = "a list/tuple of constants or an expression"
    SCALAR = "a constant (number, string, bool or None)"
    CLOSED = "one of 'both', 'left', 'right', 'none'"


@dataclass(frozen=True)
class _Sig:
    positional: tuple[tuple[str, str], ...] = ()
    required: int = 0
    variadic: str | None = None
    min_variadic: int = 0
    keywords: tuple[tuple[str, str], ...] = ()
    defaults: tuple[tuple[str, Any], ...] = ()


_NO_ARGS: Final = _Sig()
_ONE_EXPR: Final = _Sig(positional=(("other", _Kind.EXPR),), required=1)
_HORIZONTAL: Final = _Sig(variadic=_Kind.EXPR, min_variadic=1)

# Functions on the `pl` module.
_PL_FUNCTIONS: Final[Mapping[str, _Sig]] = {
    "col": _Sig(variadic=_Kind.STR, min_variadic=1),
    "lit": _Sig(positional=(("value", _Kind.SCALAR), ("dtype", _Kind.DTYPE)), required=1),
    "when": _Sig(variadic=_Kind.EXPR, min_variadic=1),
    "all_horizontal": _HORIZONTAL,
    "any_horizontal": _HORIZONTAL,
    "sum_horizontal": _HORIZONTAL,
    "max_horizontal": _HORIZONTAL,
    "min_horizontal": _HORIZONTAL,
}

_DTYPES: Final[Mapping[str, Any]] = {
    name: getattr(pl, name)
    for name in (
        "Boolean",
        "Float32",
        "Float64",
        "Int8",
        "Int16",
        "Int32",
        "Int64",
        "UInt8",
        "UInt16",
        "UInt32",
        "UInt64",
        "Utf8",
        "String",
        "Date",
        "Datetime",
    )
}

# Methods on expressions (elementwise only; no column aggregations).
_EXPR_METHODS: Final[Mapping[str, _Sig]] = {
    **{
        name: _NO_ARGS
        for name in (
            "abs",
            "is_null",
            "is_not_null",
            "is_nan",
            "is_not_nan",
            "is_finite",
            "is_infinite",
            "sqrt",
            "exp",
            "not_",
        )
    },
    "is_in": _Sig(positional=(("other", _Kind.SEQ_OR_EXPR),), required=1, keywords=(("nulls_equal", _Kind.BOOL),)),
    "is_between": _Sig(
        positional=(
            ("lower_bound", _Kind.EXPR),
            ("upper_bound", _Kind.EXPR),
            ("closed", _Kind.CLOSED),
        ),
        required=2,
    ),
    "fill_null": _Sig(positional=(("value", _Kind.EXPR),), required=1),
    "fill_nan": _Sig(positional=(("value", _Kind.EXPR),), required=1),
    "cast": _Sig(positional=(("dtype", _Kind.DTYPE),), required=1, keywords=(("strict", _Kind.BOOL),)),
    "round": _Sig(positional=(("decimals", _Kind.INT),)),
    "clip": _Sig(
        positional=(
            ("lower_bound", _Kind.NUMBER_OR_EXPR_OR_NONE),
            ("upper_bound", _Kind.NUMBER_OR_EXPR_OR_NONE),
        )
    ),
    "log": _Sig(positional=(("base", _Kind.NUMBER),)),
    "and_": _Sig(variadic=_Kind.EXPR, min_variadic=1),
    "or_": _Sig(variadic=_Kind.EXPR, min_variadic=1),
    **{name: _ONE_EXPR for name in ("eq", "ne", "lt", "le", "gt", "ge")},
}

# Extra methods on `pl.when(...).then(...)` results.
_THEN_METHODS: Final[Mapping[str, _Sig]] = {
    "otherwise": _Sig(positional=(("statement", _Kind.EXPR),), required=1),
    "when": _Sig(variadic=_Kind.EXPR, min_variadic=1),
}
_WHEN_METHODS: Final[Mapping[str, _Sig]] = {
    "then": _Sig(positional=(("statement", _Kind.EXPR),), required=1),
}

_NAMESPACE_METHODS: Final[Mapping[str, Mapping[str, _Sig]]] = {
    "list": {
        "get": _Sig(
            positional=(("index", _Kind.INT_OR_EXPR),),
            required=1,
            keywords=(("null_on_oob", _Kind.BOOL),),
            defaults=(("null_on_oob", True),),
        ),
        "contains": _Sig(positional=(("item", _Kind.EXPR),), required=1, keywords=(("nulls_equal", _Kind.BOOL),)),
        **{name: _NO_ARGS for name in ("len", "first", "last", "sum", "mean", "min", "max")},
    },
    "str": {
        "contains": _Sig(
            positional=(("pattern", _Kind.STR),),
            required=1,
            keywords=(("literal", _Kind.BOOL), ("strict", _Kind.BOOL)),
        ),
        "starts_with": _Sig(positional=(("prefix", _Kind.EXPR),), required=1),
        "ends_with": _Sig(positional=(("suffix", _Kind.EXPR),), required=1),
        **{name: _NO_ARGS for name in ("len_chars", "len_bytes", "to_lowercase", "to_uppercase")},
    },
    "dt": {name: _NO_ARGS for name in ("hour", "weekday", "day", "month", "year")},
}

_BIN_OPS: Final[Mapping[type[ast.operator], tuple[str, Callable[[Any, Any], Any]]]] = {
    ast.Add: ("+", operator.add),
    ast.Sub: ("-", operator.sub),
    ast.Mult: ("*", operator.mul),
    ast.Div: ("/", operator.truediv),
    ast.FloorDiv: ("//", operator.floordiv),
    ast.Mod: ("%", operator.mod),
    ast.Pow: ("**", operator.pow),
    ast.BitAnd: ("&", operator.and_),
    ast.BitOr: ("|", operator.or_),
}

_CMP_OPS: Final[Mapping[type[ast.cmpop], Callable[[Any, Any], Any]]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}

_CMP_HINTS: Final[Mapping[type[ast.cmpop], str]] = {
    ast.Is: "'is' is not allowed; use == or .is_null()",
    ast.IsNot: "'is not' is not allowed; use != or .is_not_null()",
    ast.In: "'in' is not allowed; use .is_in([...]) or .list.contains(...)",
    ast.NotIn: "'not in' is not allowed; use ~(... .is_in([...]))",
}

_NODE_HINTS: Final[Mapping[type[ast.AST], str]] = {
    ast.BoolOp: "'and'/'or' are not allowed; use & and | with parentheses, e.g. (a > 1) & (b < 2)",
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "generator expressions are not allowed",
    ast.Subscript: "subscripts (x[...]) are not allowed; use .list.get(i) for list elements",
    ast.JoinedStr: "f-strings are not allowed",
    ast.FormattedValue: "f-strings are not allowed",
    ast.NamedExpr: "assignment expressions (:=) are not allowed",
    ast.Starred: "starred arguments (*x) are not allowed",
    ast.IfExp: "conditional expressions (a if c else b) are not allowed; use pl.when(c).then(a).otherwise(b)",
    ast.Dict: "dict literals are not allowed",
    ast.Set: "set literals are not allowed; use a list [..]",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
    ast.Slice: "slices are not allowed",
}


# --------------------------------------------------------------------------------------------------
# Interpreter
# --------------------------------------------------------------------------------------------------


class _PlModule:
    """The name ``pl``."""


class _PlFunction:
    def __init__(self, name: str) -> None:
        self.name = name


class _DType:
    def __init__(self, name: str, dtype: Any) -> None:
        self.name = name
        self.dtype = dtype


class _Namespace:
    def __init__(self, expr: pl.Expr, name: str) -> None:
        self.expr = expr
        self.name = name


class _Method:
    def __init__(self, target: Any, label: str, name: str, sig: _Sig) -> None:
        self.target = target
        self.label = label  # for messages, e.g. ".list.get"
        self.name = name
        self.sig = sig


class _When:
    def __init__(self, obj: Any) -> None:
        self.obj = obj


class _Seq:
    def __init__(self, items: tuple[Const, ...]) -> None:
        self.items = items


_THEN_TYPES: Final = (pl.expr.whenthen.Then, pl.expr.whenthen.ChainedThen)


def _describe(value: Any) -> str:
    if isinstance(value, pl.Expr):
        return "an expression"
    if isinstance(value, _PlModule):
        return "the module pl"
    if isinstance(value, _PlFunction):
        return f"the function pl.{value.name} (missing call parentheses?)"
    if isinstance(value, _DType):
        return f"the data type pl.{value.name}"
    if isinstance(value, _Namespace):
        return f"the .{value.name} namespace"
    if isinstance(value, _Method):
        return f"the method {value.label} (missing call parentheses?)"
    if isinstance(value, _When):
        return "an unfinished pl.when(...) (add .then(...))"
    if isinstance(value, _Seq):
        return "a list/tuple"
    if value is None:
        return "None"
    article = "an" if type(value).__name__[0] in "aeiou" else "a"
    return f"{article} {type(value).__name__} constant"


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, int | float | str)


class _Positions:
    """Map (lineno, col_offset in UTF-8 bytes) to a character offset in the original text."""

    def __init__(self, text: str, base: int = 0) -> None:
        self._text = text
        self._base = base
        self._starts = [0] + [m.end() for m in _LINE_BREAK.finditer(text)]

    def of(self, lineno: int | None, col_offset: int | None, *, byte_offset: bool = True) -> int | None:
        if lineno is None or col_offset is None or lineno < 1 or lineno > len(self._starts):
            return None
        start = self._starts[lineno - 1]
        if byte_offset:
            line = self._text[start:]
            col = len(line.encode("utf-8")[: max(col_offset, 0)].decode("utf-8", errors="ignore"))
        else:
            col = max(col_offset, 0)
        return self._base + start + col

    def node(self, node: ast.AST) -> int | None:
        """Where ``node`` is best pointed at: an attribute's name, a call's callee, an operator."""
        if isinstance(node, ast.Attribute) and node.end_lineno is not None and node.end_col_offset is not None:
            return self.of(node.end_lineno, node.end_col_offset - len(node.attr.encode("utf-8")))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            return self.node(node.func)
        if isinstance(node, ast.BinOp):
            start = self.end(node.left)
            stop = self.of(node.right.lineno, node.right.col_offset)
            if start is not None and stop is not None:
                gap = self._text[start - self._base : stop - self._base]
                skip = len(gap) - len(gap.lstrip(" \t\r\n)"))
                return start + skip
        return self.of(getattr(node, "lineno", None), getattr(node, "col_offset", None))

    def end(self, node: ast.AST) -> int | None:
        return self.of(getattr(node, "end_lineno", None), getattr(node, "end_col_offset", None))


class _Interpreter:
    def __init__(self, positions: _Positions) -> None:
        self._pos = positions

    def fail(self, node: ast.AST, reason: str) -> ValidationError:
        return ValidationError(reason, self._pos.node(node))

    # -- pre-pass: size, depth, dunders ---------------------------------------------------------
    def check_shape(self, root: ast.AST) -> None:
        nodes = 0
        max_depth = 0
        stack: list[tuple[ast.AST, int]] = [(root, 1)]
        while stack:
            node, depth = stack.pop()
            if isinstance(node, ast.expr_context):
                continue
            nodes += 1
            max_depth = max(max_depth, depth)
            if nodes > MAX_EXPRESSION_NODES:
                raise self.fail(node, f"expression is too large (more than {MAX_EXPRESSION_NODES} syntax nodes)")
            if depth > MAX_EXPRESSION_DEPTH:
                raise self.fail(node, f"expression is nested too deeply (more than {MAX_EXPRESSION_DEPTH} levels)")
            name = None
            if isinstance(node, ast.Attribute):
                name = node.attr
            elif isinstance(node, ast.Name):
                name = node.id
            elif isinstance(node, ast.keyword):
                name = node.arg
            if name is not None and name.startswith("_"):
                kind = "dunder" if name.startswith("__") else "private"
                what = "attribute" if isinstance(node, ast.Attribute) else "name"
                raise self.fail(node, f"{kind} {what} {name!r} is not allowed")
            for child in ast.iter_child_nodes(node):
                stack.append((child, depth + 1))

    # -- evaluation -----------------------------------------------------------------------------
    def expression(self, node: ast.expr) -> pl.Expr:
        value = self.eval(node)
        if isinstance(value, pl.Expr):
            return value
        raise self.fail(
            node, f"a validation must be a polars expression such as pl.col(...) > 1, got {_describe(value)}"
        )

    def eval(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name):
            if node.id == "pl":
                return _PlModule()
            hint = " (import polars as pl; write pl.col(...))" if node.id == "polars" else ""
            raise self.fail(node, f"name {node.id!r} is not allowed; only 'pl' may be referenced{hint}")
        if isinstance(node, ast.Attribute):
            return self.attribute(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.BinOp):
            return self.binop(node)
        if isinstance(node, ast.UnaryOp):
            return self.unaryop(node)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.List | ast.Tuple):
            return self.sequence(node)
        for cls, hint in _NODE_HINTS.items():
            if isinstance(node, cls):
                raise self.fail(node, hint)
        raise self.fail(node, f"{type(node).__name__} syntax is not allowed")

    def constant(self, node: ast.Constant) -> Const:
        value = node.value
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return value
        if isinstance(value, int):
            if not _INT_MIN <= value <= _INT_MAX:
                raise self.fail(node, "integer constant out of the 64-bit range")
            return value
        if isinstance(value, float):
            return value
        raise self.fail(node, f"{type(value).__name__} constants are not allowed")

    def sequence(self, node: ast.List | ast.Tuple) -> _Seq:
        items: list[Const] = []
        for elt in node.elts:
            if isinstance(elt, ast.Starred):
                raise self.fail(elt, _NODE_HINTS[ast.Starred])
            value = self.eval(elt)
            if not _is_scalar(value):
                raise self.fail(elt, f"list/tuple items must be constants, got {_describe(value)}")
            items.append(value)
        return _Seq(tuple(items))

    def attribute(self, node: ast.Attribute) -> Any:
        base = self.eval(node.value)
        attr = node.attr
        if isinstance(base, _PlModule):
            if attr in _PL_FUNCTIONS:
                return _PlFunction(attr)
            if attr in _DTYPES:
                return _DType(attr, _DTYPES[attr])
            raise self.fail(node, f"pl.{attr} is not allowed")
        if isinstance(base, _Namespace):
            methods = _NAMESPACE_METHODS[base.name]
            if attr in methods:
                return _Method(getattr(base.expr, base.name), f".{base.name}.{attr}()", attr, methods[attr])
            raise self.fail(node, f"method .{base.name}.{attr}() is not allowed")
        if isinstance(base, _When):
            if attr in _WHEN_METHODS:
                return _Method(base.obj, f".{attr}()", attr, _WHEN_METHODS[attr])
            raise self.fail(node, f"pl.when(...) must be followed by .then(...), not .{attr}")
        if isinstance(base, pl.Expr):
            if isinstance(base, _THEN_TYPES) and attr in _THEN_METHODS:
                return _Method(base, f".{attr}()", attr, _THEN_METHODS[attr])
            if attr in _NAMESPACE_METHODS:
                return _Namespace(base, attr)
            if attr in _EXPR_METHODS:
                return _Method(base, f".{attr}()", attr, _EXPR_METHODS[attr])
            raise self.fail(node, f"method .{attr}() is not allowed on expressions")
        raise self.fail(node, f"attribute .{attr} is not allowed on {_describe(base)}")

    def call(self, node: ast.Call) -> Any:
        func = self.eval(node.func)
        if isinstance(func, _PlFunction):
            sig = _PL_FUNCTIONS[func.name]
            label = f"pl.{func.name}()"
            target: Any = pl
            name = func.name
        elif isinstance(func, _Method):
            sig, label, target, name = func.sig, func.label, func.target, func.name
        else:
            raise self.fail(node, f"calling {_describe(func)} is not allowed")
        args, kwargs = self.arguments(node, sig, label)
        if name == "contains" and label == ".str.contains()":
            self.check_plain_pattern(node, args, kwargs)
        try:
            result = getattr(target, name)(*args, **kwargs)
        except Exception as exc:
            raise self.fail(node, f"invalid call {label}: {_first_line(exc)}") from None
        if name == "when" and not isinstance(result, pl.Expr):
            return _When(result)
        return result

    def arguments(self, node: ast.Call, sig: _Sig, label: str) -> tuple[list[Any], dict[str, Any]]:
        positional: list[Any] = []
        named: dict[str, Any] = {}
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.fail(arg, _NODE_HINTS[ast.Starred])
        if sig.variadic is not None:
            if len(node.args) < sig.min_variadic:
                raise self.fail(node, f"{label} needs at least {sig.min_variadic} argument(s)")
            positional = [self.convert(arg, sig.variadic, label) for arg in node.args]
        else:
            if node.args and not sig.positional:
                raise self.fail(node.args[0], f"{label} takes no positional arguments")
            if len(node.args) > len(sig.positional):
                raise self.fail(
                    node.args[len(sig.positional)],
                    f"{label} takes at most {len(sig.positional)} positional argument(s)",
                )
            for arg, (pname, kind) in zip(node.args, sig.positional, strict=False):
                named[pname] = self.convert(arg, kind, label)
        allowed_kw = dict(sig.keywords)
        if sig.variadic is None:
            allowed_kw.update(dict(sig.positional))
        for kw in node.keywords:
            if kw.arg is None:
                raise self.fail(kw, "**kwargs are not allowed")
            if kw.arg not in allowed_kw:
                raise self.fail(kw, f"keyword argument {kw.arg!r} is not allowed for {label}")
            if kw.arg in named:
                raise self.fail(kw, f"argument {kw.arg!r} given twice to {label}")
            named[kw.arg] = self.convert(kw.value, allowed_kw[kw.arg], label)
        if sig.variadic is None:
            missing = [p for p, _ in sig.positional[: sig.required] if p not in named]
            if missing:
                raise self.fail(node, f"{label} is missing required argument {missing[0]!r}")
        for key, default in sig.defaults:
            named.setdefault(key, default)
        return positional, named

    def convert(self, node: ast.expr, kind: str, label: str) -> Any:
        value = self.eval(node)
        ok = False
        if kind == _Kind.EXPR:
            ok = isinstance(value, pl.Expr) or _is_scalar(value)
        elif kind == _Kind.SCALAR:
            ok = _is_scalar(value)
        elif kind == _Kind.INT:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind == _Kind.INT_OR_EXPR:
            ok = isinstance(value, pl.Expr) or (isinstance(value, int) and not isinstance(value, bool))
        elif kind == _Kind.NUMBER:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        elif kind == _Kind.NUMBER_OR_EXPR_OR_NONE:
            ok = value is None or isinstance(value, pl.Expr)
            ok = ok or (isinstance(value, int | float) and not isinstance(value, bool))
        elif kind == _Kind.BOOL:
            ok = isinstance(value, bool)
        elif kind == _Kind.STR:
            ok = isinstance(value, str)
        elif kind == _Kind.DTYPE:
            ok = isinstance(value, _DType)
            if ok:
                value = value.dtype
        elif kind == _Kind.SEQ_OR_EXPR:
            ok = isinstance(value, _Seq | pl.Expr)
            if isinstance(value, _Seq):
                value = list(value.items)
        elif kind == _Kind.CLOSED:
            ok = value in ("both", "left", "right", "none")
        if not ok:
            raise self.fail(node, f"argument of {label} must be {kind}, got {_describe(value)}")
        return value

    def check_plain_pattern(self, node: ast.Call, args: list[Any], kwargs: dict[str, Any]) -> None:
        if kwargs.get("literal") is True:
            return
        pattern = kwargs.get("pattern")
        if isinstance(pattern, str) and _REGEX_META.search(pattern):
            raise self.fail(
                node,
                ".str.contains() with regex metacharacters is not allowed; pass literal=True "
                "to match the pattern as plain text",
            )
        kwargs["literal"] = True  # a plain pattern means the same thing matched literally

    def binop(self, node: ast.BinOp) -> Any:
        entry = _BIN_OPS.get(type(node.op))
        if entry is None:
            raise self.fail(node, f"operator {type(node.op).__name__} is not allowed")
        symbol, fn = entry
        left = self.operand(node.left, symbol)
        right = self.operand(node.right, symbol)
        return self.apply(node, symbol, fn, left, right)

    def operand(self, node: ast.expr, symbol: str) -> Any:
        value = self.eval(node)
        if isinstance(value, pl.Expr) or _is_scalar(value):
            return value
        raise self.fail(node, f"operand of {symbol} must be an expression or a constant, got {_describe(value)}")

    def apply(self, node: ast.AST, symbol: str, fn: Callable[[Any, Any], Any], left: Any, right: Any) -> pl.Expr:
        if not isinstance(left, pl.Expr) and not isinstance(right, pl.Expr):
            left = pl.lit(left)  # never compute on Python constants (e.g. 10 ** 10 ** 10)
        try:
            result = fn(left, right)
        except Exception as exc:
            raise self.fail(node, f"invalid operands for {symbol}: {_first_line(exc)}") from None
        if not isinstance(result, pl.Expr):
            raise self.fail(node, f"operator {symbol} did not produce an expression")
        return result

    def unaryop(self, node: ast.UnaryOp) -> Any:
        if isinstance(node.op, ast.Not):
            raise self.fail(node, "'not' is not allowed; use ~(...) to negate a condition")
        if isinstance(node.op, ast.USub):
            value = self.eval(node.operand)
            if isinstance(value, int | float) and not isinstance(value, bool):
                negated = -value
                if isinstance(negated, int) and not _INT_MIN <= negated <= _INT_MAX:
                    raise self.fail(node, "integer constant out of the 64-bit range")
                return negated
            if isinstance(value, pl.Expr):
                return -value
            raise self.fail(node, f"unary - is not allowed on {_describe(value)}")
        if isinstance(node.op, ast.Invert):
            value = self.eval(node.operand)
            if isinstance(value, bool | None):
                value = pl.lit(value)
            if isinstance(value, pl.Expr):
                return ~value
            raise self.fail(node, f"~ is not allowed on {_describe(value)}")
        raise self.fail(node, f"unary operator {type(node.op).__name__} is not allowed")

    def compare(self, node: ast.Compare) -> pl.Expr:
        for op in node.ops:
            if type(op) in _CMP_HINTS:
                raise self.fail(node, _CMP_HINTS[type(op)])
        left = self.operand(node.left, "comparison")
        result: pl.Expr | None = None
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            fn = _CMP_OPS.get(type(op))
            if fn is None:
                raise self.fail(node, f"comparison {type(op).__name__} is not allowed")
            right = self.operand(comparator, "comparison")
            part = self.apply(node, type(op).__name__, fn, left, right)
            result = part if result is None else result & part
            left = right
        assert result is not None
        return result


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _parse(source: str, mode: str) -> tuple[ast.AST, _Positions]:
    if not isinstance(source, str):
        raise ValidationError(f"expression must be a string, got {type(source).__name__}")
    if len(source) > MAX_EXPRESSION_CHARS:
        raise ValidationError(
            f"expression is too long ({len(source)} characters; at most {MAX_EXPRESSION_CHARS})",
            MAX_EXPRESSION_CHARS,
        )
    stripped = source.lstrip()
    base = len(source) - len(stripped)
    if not stripped.strip():
        raise ValidationError("expression is empty", 0)
    positions = _Positions(stripped, base)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(stripped, mode=mode)
    except SyntaxError as exc:
        pos = positions.of(exc.lineno, (exc.offset or 1) - 1, byte_offset=False)
        raise ValidationError(f"syntax error: {exc.msg}", pos) from None
    except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
        raise ValidationError(f"expression cannot be parsed: {_first_line(exc)}") from None
    return tree, positions


def _interpret(expr_node: ast.expr, positions: _Positions) -> pl.Expr:
    interp = _Interpreter(positions)
    interp.check_shape(expr_node)
    try:
        return interp.expression(expr_node)
    except RecursionError:
        raise ValidationError("expression is nested too deeply") from None


def parse_expression(source: str) -> pl.Expr:
    """Build the polars expression written in ``source`` (Python syntax, allowlisted subset).

    Raises :class:`ValidationError` for anything that is not allowed or does not parse.
    """
    tree, positions = _parse(source, "eval")
    assert isinstance(tree, ast.Expression)
    return _interpret(tree.body, positions)


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid validation name, else raise :class:`ValidationError`."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValidationError(
            f"invalid validation name {name!r}: must match ^[A-Za-z_][A-Za-z0-9_]{{0,63}}$ "
            "(a Python identifier of at most 64 characters)"
        )
    if name in _RESERVED_NAMES:
        raise ValidationError(f"validation name {name!r} is reserved (it would collide with anomaly.count)")
    if name.startswith("__"):
        raise ValidationError(
            f"validation name {name!r} is reserved: names starting with '__' are internal (e.g. __any__)"
        )
    return name


def _split_validation(text: str) -> tuple[str, str, ast.expr, _Positions]:
    if not isinstance(text, str):
        raise ValidationError(f"validation must be a string, got {type(text).__name__}")
    text = text.rstrip()
    if text.endswith(","):  # tolerate the `name=expr,` form copied from add_validations(...)
        text = text[:-1]
    tree, positions = _parse(text, "exec")
    assert isinstance(tree, ast.Module)
    body = tree.body
    if (
        len(body) != 1
        or not isinstance(body[0], ast.Assign)
        or len(body[0].targets) != 1
        or not isinstance(body[0].targets[0], ast.Name)
    ):
        pos = positions.node(body[0]) if body else 0
        raise ValidationError("a validation must have the form: name = <polars expression>", pos)
    assign = body[0]
    target = assign.targets[0]
    assert isinstance(target, ast.Name)
    try:
        validate_name(target.id)
    except ValidationError as exc:
        raise ValidationError(exc.reason, positions.node(target)) from None
    expression_source = ast.get_source_segment(text.lstrip(), assign.value) or ""
    return target.id, expression_source, assign.value, positions


def parse_validation(text: str) -> tuple[str, pl.Expr]:
    """Parse ``name = <polars expression>``; positions in errors refer to ``text``."""
    name, _source, node, positions = _split_validation(text)
    return name, _interpret(node, positions)


# --------------------------------------------------------------------------------------------------
# Validations and evaluation
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Validation:
    """A named validation. ``expression`` is the source text; ``expr`` is compiled from it.

    Constructing one (directly or with :meth:`create`) validates the name and the expression.
    """

    name: str
    expression: str
    expr: pl.Expr = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        validate_name(self.name)
        object.__setattr__(self, "expr", parse_expression(self.expression))

    @classmethod
    def create(cls, name: str, expression: str) -> Validation:
        return cls(name, expression)

    @classmethod
    def from_text(cls, text: str) -> Validation:
        """Build from the ``name = <expression>`` form."""
        name, source, node, positions = _split_validation(text)
        _interpret(node, positions)
        return cls(name, source)

    @property
    def column(self) -> str:
        """The output column, ``anomaly.<name>``."""
        return ANOMALY_PREFIX + self.name

    def to_text(self) -> str:
        return f"{self.name} = {self.expression}"


@dataclass(frozen=True)
class ValidationResult:
    """``frame``: ``anomaly.count`` (UInt32) then one Boolean ``anomaly.<name>`` per validation,
    row-aligned with the evaluated batch. ``errors``: validation name → why it was all-False for
    this batch (missing column, wrong type, ...)."""

    frame: pl.DataFrame
    errors: dict[str, str] = field(default_factory=dict)


_EVAL_ERRORS: Final = (Exception, PanicException)


class ValidationSet(Mapping[str, Validation]):
    """An immutable, ordered mapping name → :class:`Validation`.

    A later validation with the same name replaces an earlier one (keeping its position).
    """

    __slots__ = ("_items",)

    def __init__(self, validations: Iterable[Validation] = ()) -> None:
        items: dict[str, Validation] = {}
        for v in validations:
            if not isinstance(v, Validation):
                raise TypeError(f"expected Validation, got {type(v).__name__}")
            items[v.name] = v
        self._items = items

    @classmethod
    def from_mapping(cls, expressions: Mapping[str, str]) -> ValidationSet:
        """Build from ``{name: expression_source}``."""
        return cls(Validation.create(name, src) for name, src in expressions.items())

    def __getitem__(self, name: str) -> Validation:
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"ValidationSet({list(self._items.values())!r})"

    def with_validation(self, validation: Validation) -> ValidationSet:
        """A new set with ``validation`` added (or replacing the one with the same name)."""
        return ValidationSet([*self._items.values(), validation])

    def without(self, name: str) -> ValidationSet:
        """A new set without ``name``; raises ``KeyError`` if there is no such validation."""
        if name not in self._items:
            raise KeyError(name)
        return ValidationSet(v for n, v in self._items.items() if n != name)

    def to_dict(self) -> dict[str, str]:
        """``{name: expression_source}`` for storage; round-trips through :meth:`from_mapping`."""
        return {n: v.expression for n, v in self._items.items()}

    # -- evaluation -----------------------------------------------------------------------------
    def evaluate(self, df: pl.DataFrame) -> ValidationResult:
        """Evaluate every validation on ``df`` in one vectorized query. Never raises on bad data."""
        errors: dict[str, str] = {}
        lf = df.lazy()
        active = self._check_schemas(lf, errors)
        frame = self._compute(lf, active, errors)
        if frame is None:  # pragma: no cover - polars failed even on the per-validation retry
            frame = self._all_false(df.height)
        return ValidationResult(frame, errors)

    def _all_false(self, height: int) -> pl.DataFrame:
        return pl.DataFrame(
            [
                pl.Series(ANOMALY_COUNT_COLUMN, [0] * height, dtype=pl.UInt32),
                *(pl.Series(v.column, [False] * height, dtype=pl.Boolean) for v in self._items.values()),
            ]
        )

    def _check_schemas(self, lf: pl.LazyFrame, errors: dict[str, str]) -> list[Validation]:
        """Resolve output types without computing; drop validations that cannot run on this schema."""
        validations = list(self._items.values())
        try:
            schema = lf.select([v.expr.alias(v.column) for v in validations]).collect_schema()
            dtypes = {v.name: schema[v.column] for v in validations}
        except _EVAL_ERRORS:
            dtypes = {}
            for v in validations:
                try:
                    dtypes[v.name] = lf.select(v.expr.alias(v.column)).collect_schema()[v.column]
                except _EVAL_ERRORS as exc:
                    errors[v.name] = f"{type(exc).__name__}: {_first_line(exc)}"
        active = []
        for v in validations:
            dtype = dtypes.get(v.name)
            if dtype is None:
                continue
            if dtype in (pl.Boolean, pl.Null):
                active.append(v)
                continue
            hint = " (use .list.get(i) or a .list aggregation)" if isinstance(dtype, pl.List) else ""
            errors[v.name] = f"expression evaluates to {dtype}, expected Boolean{hint}"
        return active

    def _query(self, lf: pl.LazyFrame, active: list[Validation]) -> pl.LazyFrame:
        active_names = {v.name for v in active}
        columns = [
            (v.expr.fill_null(False).cast(pl.Boolean) if v.name in active_names else pl.lit(False)).alias(v.column)
            for v in self._items.values()
        ]
        names = [v.column for v in self._items.values()]
        if names:
            count = pl.sum_horizontal([pl.col(n).cast(pl.UInt32) for n in names]).cast(pl.UInt32)
        else:
            count = pl.lit(0, dtype=pl.UInt32)
        # with_columns broadcasts literal-only validations to the batch height; select keeps ours.
        return (
            lf.with_columns(columns).select(names).select(count.alias(ANOMALY_COUNT_COLUMN), *names)
            if names
            else lf.with_columns(count.alias(ANOMALY_COUNT_COLUMN)).select(ANOMALY_COUNT_COLUMN)
        )

    def _compute(self, lf: pl.LazyFrame, active: list[Validation], errors: dict[str, str]) -> pl.DataFrame | None:
        try:
            return self._query(lf, active).collect()
        except _EVAL_ERRORS:
            pass
        # Some validation fails at run time on this batch: find which, run the rest.
        survivors = []
        for v in active:
            try:
                lf.select(v.expr.fill_null(False).cast(pl.Boolean).alias(v.column)).collect()
                survivors.append(v)
            except _EVAL_ERRORS as exc:
                errors[v.name] = f"{type(exc).__name__}: {_first_line(exc)}"
        try:
            return self._query(lf, survivors).collect()
        except _EVAL_ERRORS:
            for v in survivors:
                errors.setdefault(v.name, "evaluation failed together with other validations")
            return None


def failure_counts(result: ValidationResult) -> dict[str, int]:
    """Rows flagged per validation, plus ``"__any__"``: rows with ``anomaly.count >= 1``."""
    frame = result.frame
    names = [c for c in frame.columns if c.startswith(ANOMALY_PREFIX) and c != ANOMALY_COUNT_COLUMN]
    if frame.height == 0:
        return {**{c[len(ANOMALY_PREFIX) :]: 0 for c in names}, "__any__": 0}
    row = frame.select(
        *[pl.col(c).sum().cast(pl.Int64).alias(c) for c in names],
        (pl.col(ANOMALY_COUNT_COLUMN) >= 1).sum().cast(pl.Int64).alias("__any__"),
    ).row(0)
    counts = {c[len(ANOMALY_PREFIX) :]: int(n or 0) for c, n in zip(names, row, strict=False)}
    counts["__any__"] = int(row[-1] or 0)
    return counts
