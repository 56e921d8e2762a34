"""Tests for stream.config.validations (Wallaroo-style validations, allowlisted expression parser)."""

from __future__ import annotations

import warnings

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal, assert_series_equal

from stream.config.validations import (
    ANOMALY_COUNT_COLUMN,
    MAX_EXPRESSION_CHARS,
    Validation,
    ValidationError,
    ValidationResult,
    ValidationSet,
    failure_counts,
    parse_expression,
    parse_validation,
    validate_name,
)


def _frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "out.dense_1": [[0.981199], [0.5], [0.0014974177], None, [], [0.95, 0.01]],
            "in.sales_count": [[1357, 1247, 350], [497, 617], [617, 525, 513], [], None, [900]],
            "in.a": [0.5, 1.2, None, 0.0, float("nan"), 3.0],
            "in.b": [0.1, 0.0005, 0.2, None, 0.3, 0.002],
            "in.n": [1, 2, 3, None, 5, 6],
            "in.city": ["Boston", "NYC", None, "boston", "Austin", "a.c"],
            "tag.region": ["us-east", "us-west", "eu", "us-east", None, "eu"],
            "gt.price": [500.0, None, 10.0, 20.0, 30.0, 40.0],
            "in.flag": [True, False, None, True, False, True],
            "ts": pl.datetime_range(pl.datetime(2026, 11, 22, 10), pl.datetime(2026, 11, 22, 15), "1h", eager=True),
        }
    )


@pytest.fixture
def df() -> pl.DataFrame:
    return _frame()


with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # "Comparisons with None always result in null"
    _EQ_NONE = pl.col("in.a") == None  # noqa: E711 - the user may write it; null => not anomalous


# --- parsing = the same expression written directly in Python -----------------------------------

EQUIVALENT: list[tuple[str, pl.Expr]] = [
    ('pl.col("out.dense_1").list.get(0) > 0.9', pl.col("out.dense_1").list.get(0, null_on_oob=True) > 0.9),
    (
        'pl.col("out.dense_1").list.get(0, null_on_oob=True) < 0.05',
        pl.col("out.dense_1").list.get(0, null_on_oob=True) < 0.05,
    ),
    ('pl.col("in.sales_count").list.min() < 500', pl.col("in.sales_count").list.min() < 500),
    ('pl.col("in.sales_count").list.max() >= 1000', pl.col("in.sales_count").list.max() >= 1000),
    ('pl.col("in.sales_count").list.mean() < 600', pl.col("in.sales_count").list.mean() < 600),
    ('pl.col("in.sales_count").list.sum() > 1000', pl.col("in.sales_count").list.sum() > 1000),
    ('pl.col("in.sales_count").list.len() == 0', pl.col("in.sales_count").list.len() == 0),
    (
        'pl.col("in.sales_count").list.first() > pl.col("in.sales_count").list.last()',
        pl.col("in.sales_count").list.first() > pl.col("in.sales_count").list.last(),
    ),
    ('pl.col("in.sales_count").list.contains(350)', pl.col("in.sales_count").list.contains(350)),
    (
        '(pl.col("out.dense_1").list.get(0) < 0.9) & (pl.col("out.dense_1").list.get(0) > 0.001)',
        (pl.col("out.dense_1").list.get(0, null_on_oob=True) < 0.9)
        & (pl.col("out.dense_1").list.get(0, null_on_oob=True) > 0.001),
    ),
    ('(pl.col("in.a") < 0.9) & (pl.col("in.b") > 0.001)', (pl.col("in.a") < 0.9) & (pl.col("in.b") > 0.001)),
    ('(pl.col("in.a") > 1) | ~(pl.col("in.b") > 0.001)', (pl.col("in.a") > 1) | ~(pl.col("in.b") > 0.001)),
    ('0 < pl.col("in.a") <= 1', (pl.col("in.a") > 0) & (pl.col("in.a") <= 1)),
    (
        "pl.col('in.a') * 2 + 1 >= pl.col('in.b') ** 2 - 3 / 4",
        pl.col("in.a") * 2 + 1 >= pl.col("in.b") ** 2 - 3 / 4,
    ),
    ('pl.col("in.n") // 2 % 2 == 1', pl.col("in.n") // 2 % 2 == 1),
    ('-pl.col("in.a") < -1', -pl.col("in.a") < -1),
    ('pl.col("in.a").is_null()', pl.col("in.a").is_null()),
    ('pl.col("in.a").is_nan()', pl.col("in.a").is_nan()),
    (
        'pl.col("in.a").is_not_nan() & pl.col("in.a").is_finite()',
        pl.col("in.a").is_not_nan() & pl.col("in.a").is_finite(),
    ),
    ('pl.col("in.a").fill_null(10).fill_nan(10) > 2', pl.col("in.a").fill_null(10).fill_nan(10) > 2),
    (
        'pl.col("in.a").is_between(0.1, 1.0, closed="left")',
        pl.col("in.a").is_between(0.1, 1.0, closed="left"),
    ),
    ('pl.col("in.n").is_in([1, 3, -5])', pl.col("in.n").is_in([1, 3, -5])),
    ('pl.col("in.city").is_in(("NYC", "Austin"))', pl.col("in.city").is_in(["NYC", "Austin"])),
    (
        'pl.col("in.n").cast(pl.Float64).sqrt().round(1) > 1.5',
        pl.col("in.n").cast(pl.Float64).sqrt().round(1) > 1.5,
    ),
    ('pl.col("in.n").clip(2, 4).log(2) >= 1', pl.col("in.n").clip(2, 4).log(2) >= 1),
    ('pl.col("in.a").abs().exp() > 2', pl.col("in.a").abs().exp() > 2),
    ('pl.col("in.flag").not_()', pl.col("in.flag").not_()),
    ('pl.col("in.flag").and_(pl.col("in.a") > 0)', pl.col("in.flag").and_(pl.col("in.a") > 0)),
    ('pl.col("in.flag").or_(pl.col("in.a") > 0)', pl.col("in.flag").or_(pl.col("in.a") > 0)),
    ('pl.col("in.n").gt(2).and_(pl.col("in.n").le(5))', pl.col("in.n").gt(2).and_(pl.col("in.n").le(5))),
    (
        'pl.col("in.n").eq(2) | pl.col("in.n").ne(2).not_()',
        pl.col("in.n").eq(2) | pl.col("in.n").ne(2).not_(),
    ),
    ('pl.col("in.city").str.to_lowercase() == "boston"', pl.col("in.city").str.to_lowercase() == "boston"),
    (
        'pl.col("in.city").str.to_uppercase().str.starts_with("B")',
        pl.col("in.city").str.to_uppercase().str.starts_with("B"),
    ),
    ('pl.col("in.city").str.ends_with("n")', pl.col("in.city").str.ends_with("n")),
    ('pl.col("in.city").str.len_chars() > 4', pl.col("in.city").str.len_chars() > 4),
    ('pl.col("in.city").str.len_bytes() <= 3', pl.col("in.city").str.len_bytes() <= 3),
    (
        'pl.col("in.city").str.contains("a.c", literal=True)',
        pl.col("in.city").str.contains("a.c", literal=True),
    ),
    ('pl.col("in.city").str.contains("ost")', pl.col("in.city").str.contains("ost", literal=True)),
    ('pl.col("tag.region") != "eu"', pl.col("tag.region") != "eu"),
    ('pl.col("gt.price") - pl.col("in.n") > 100', pl.col("gt.price") - pl.col("in.n") > 100),
    ('pl.col("ts").dt.hour() >= 13', pl.col("ts").dt.hour() >= 13),
    ('pl.col("ts").dt.weekday() == 7', pl.col("ts").dt.weekday() == 7),
    (
        'pl.col("ts").dt.day() + pl.col("ts").dt.month() + pl.col("ts").dt.year() > 2050',
        pl.col("ts").dt.day() + pl.col("ts").dt.month() + pl.col("ts").dt.year() > 2050,
    ),
    (
        'pl.when(pl.col("in.n") > 3).then(pl.col("in.a") > 1).otherwise(pl.lit(False))',
        pl.when(pl.col("in.n") > 3).then(pl.col("in.a") > 1).otherwise(pl.lit(False)),
    ),
    (
        'pl.when(pl.col("in.n") > 4).then(True).when(pl.col("in.n") < 2).then(None).otherwise(False)',
        pl.when(pl.col("in.n") > 4).then(True).when(pl.col("in.n") < 2).then(None).otherwise(False),
    ),
    ('pl.any_horizontal(pl.col("in.a", "in.b") > 1)', pl.any_horizontal(pl.col("in.a", "in.b") > 1)),
    (
        'pl.all_horizontal(pl.col("in.a") > 0, pl.col("in.b") > 0)',
        pl.all_horizontal(pl.col("in.a") > 0, pl.col("in.b") > 0),
    ),
    (
        'pl.sum_horizontal(pl.col("in.a"), pl.col("in.b"), 1) > 2',
        pl.sum_horizontal(pl.col("in.a"), pl.col("in.b"), 1) > 2,
    ),
    ('pl.max_horizontal("in.a", pl.col("in.b")) > 1', pl.max_horizontal("in.a", pl.col("in.b")) > 1),
    (
        'pl.min_horizontal(pl.col("in.a"), pl.col("in.b")) < 0.01',
        pl.min_horizontal(pl.col("in.a"), pl.col("in.b")) < 0.01,
    ),
    ('pl.lit(5, pl.Int64) < pl.col("in.n")', pl.lit(5, pl.Int64) < pl.col("in.n")),
    ('pl.col("in.a") == None', _EQ_NONE),
    ('pl.col("in.n").cast(pl.Utf8) == "3"', pl.col("in.n").cast(pl.String) == "3"),
    ('pl.col("in.a").cast(pl.Int64, strict=False) > 0', pl.col("in.a").cast(pl.Int64, strict=False) > 0),
    ('True & pl.col("in.flag")', True & pl.col("in.flag")),
]


@pytest.mark.filterwarnings("ignore:Comparisons with None")
@pytest.mark.parametrize(("source", "direct"), EQUIVALENT, ids=[s for s, _ in EQUIVALENT])
def test_parsed_expression_matches_direct_polars(df: pl.DataFrame, source: str, direct: pl.Expr) -> None:
    parsed = parse_expression(source)
    assert_series_equal(df.select(parsed.alias("x"))["x"], df.select(direct.alias("x"))["x"])
    # And through a ValidationSet: same values with null read as "not anomalous".
    result = ValidationSet([Validation.create("v", source)]).evaluate(df)
    assert result.errors == {}
    expected = df.select(direct.fill_null(False).alias("anomaly.v"))["anomaly.v"]
    assert_series_equal(result.frame["anomaly.v"], expected)
    assert_series_equal(result.frame[ANOMALY_COUNT_COLUMN], expected.cast(pl.UInt32).alias(ANOMALY_COUNT_COLUMN))


def test_seed_multiple_validations_sales_example() -> None:
    # Wallaroo docs: minimum_sales + average_sales_too_low over three requests -> counts 1, 2, 1.
    vs = ValidationSet.from_mapping(
        {
            "minimum_sales": 'pl.col("in.sales_count").list.min() < 500',
            "average_sales_too_low": 'pl.col("out.predicted_sales").list.get(0) < 500',
        }
    )
    batch = pl.DataFrame(
        {
            "in.sales_count": [
                [1357, 1247, 350, 1437, 952, 757, 1831],
                [497, 617, 350, 200, 150, 400, 110],
                [617, 525, 513, 517, 622, 757, 508],
            ],
            "out.predicted_sales": [[1527], [325], [497]],
        }
    )
    result = vs.evaluate(batch)
    assert result.errors == {}
    assert result.frame.columns == ["anomaly.count", "anomaly.minimum_sales", "anomaly.average_sales_too_low"]
    assert result.frame.schema["anomaly.count"] == pl.UInt32
    assert result.frame.rows() == [(1, True, False), (2, True, True), (1, False, True)]
    assert failure_counts(result) == {"minimum_sales": 2, "average_sales_too_low": 2, "__any__": 3}


def test_seed_fraud_and_too_low() -> None:
    vs = ValidationSet(
        [
            Validation.from_text('fraud = pl.col("out.dense_1").list.get(0) > 0.9'),
            Validation.from_text('too_low=pl.col("out.dense_1").list.get(0) < 0.05,'),
            Validation.from_text(
                'in_between_2=(pl.col("out.dense_1").list.get(0) < 0.9) & (pl.col("out.dense_1").list.get(0) > 0.001)'
            ),
        ]
    )
    batch = pl.DataFrame({"out.dense_1": [[0.981199], [0.0014974177], [0.5], [0.0001]]})
    result = vs.evaluate(batch)
    assert result.frame.rows() == [
        (1, True, False, False),
        (2, False, True, True),
        (1, False, False, True),
        (1, False, True, False),
    ]
    assert failure_counts(result) == {"fraud": 1, "too_low": 2, "in_between_2": 2, "__any__": 4}


def test_anomaly_count_sums_and_nulls_are_not_anomalous(df: pl.DataFrame) -> None:
    vs = ValidationSet.from_mapping(
        {
            "high_a": 'pl.col("in.a") > 1',
            "low_b": 'pl.col("in.b") < 0.01',
            "fraud": 'pl.col("out.dense_1").list.get(0) > 0.9',
        }
    )
    result = vs.evaluate(df)
    f = result.frame
    assert f.height == df.height
    assert f.null_count().row(0) == (0, 0, 0, 0)
    expected_count = (
        f["anomaly.high_a"].cast(pl.UInt32) + f["anomaly.low_b"].cast(pl.UInt32) + f["anomaly.fraud"].cast(pl.UInt32)
    )
    assert f["anomaly.count"].to_list() == expected_count.to_list()
    # row 3: in.a = 0.0, in.b = null, dense_1 = null -> nothing flagged
    assert f.row(3) == (0, False, False, False)
    # row 4: empty list -> list.get(0) is null (not an error) -> not anomalous
    assert f["anomaly.fraud"].to_list() == [True, False, False, False, False, True]
    # polars orders NaN above every number, so NaN > 1 is True (row 4), as in direct polars.
    assert f["anomaly.high_a"].to_list() == [False, True, False, False, True, True]
    assert failure_counts(result) == {"high_a": 3, "low_b": 2, "fraud": 2, "__any__": 4}


def test_literal_only_validation_broadcasts_to_batch_height(df: pl.DataFrame) -> None:
    result = ValidationSet.from_mapping({"always": "pl.lit(True)", "never": "pl.lit(None)"}).evaluate(df)
    assert result.errors == {}
    assert result.frame["anomaly.always"].to_list() == [True] * df.height
    assert result.frame["anomaly.never"].to_list() == [False] * df.height
    assert result.frame["anomaly.count"].to_list() == [1] * df.height


def test_empty_set_and_empty_frame(df: pl.DataFrame) -> None:
    result = ValidationSet().evaluate(df)
    assert result.frame.columns == ["anomaly.count"]
    assert result.frame["anomaly.count"].to_list() == [0] * df.height
    assert failure_counts(result) == {"__any__": 0}
    vs = ValidationSet.from_mapping({"a": 'pl.col("in.a") > 1'})
    empty = vs.evaluate(df.clear())
    assert empty.frame.height == 0 and empty.frame.schema == pl.Schema(
        {"anomaly.count": pl.UInt32, "anomaly.a": pl.Boolean}
    )
    assert failure_counts(empty) == {"a": 0, "__any__": 0}


# --- run-time failures never raise ----------------------------------------------------------------

RUNTIME_FAILURES = {
    "missing": ('pl.col("in.nope") > 1', "ColumnNotFoundError"),
    "list_on_string": ('pl.col("in.city").list.get(0) > 1', "InvalidOperationError"),
    "strict_cast": ('pl.col("in.city").cast(pl.Int64) > 1', "InvalidOperationError"),
    "not_boolean": ('pl.col("in.a") + 1', "expected Boolean"),
    "list_result": ('pl.col("out.dense_1")', "expected Boolean"),
    "oob_strict": ('pl.col("out.dense_1").list.get(0, null_on_oob=False) > 0.9', "out of bounds"),
    "multi_output": ('pl.col("in.a", "in.b") > 1', ""),
}


@pytest.mark.parametrize("bad", sorted(RUNTIME_FAILURES))
def test_runtime_failure_is_all_false_with_error(df: pl.DataFrame, bad: str) -> None:
    source, fragment = RUNTIME_FAILURES[bad]
    vs = ValidationSet.from_mapping({"ok_before": 'pl.col("in.a") > 1', bad: source, "ok_after": 'pl.col("in.n") > 4'})
    result = vs.evaluate(df)
    assert set(result.errors) == {bad}
    assert fragment in result.errors[bad]
    f = result.frame
    assert f.height == df.height
    assert f[f"anomaly.{bad}"].to_list() == [False] * df.height
    assert f["anomaly.ok_before"].to_list() == df.select((pl.col("in.a") > 1).fill_null(False))["in.a"].to_list()
    assert f["anomaly.ok_after"].to_list() == [False, False, False, False, True, True]
    assert (
        f["anomaly.count"].to_list()
        == (f["anomaly.ok_before"].cast(pl.UInt32) + f["anomaly.ok_after"].cast(pl.UInt32)).to_list()
    )


def test_all_validations_failing_still_returns_frame(df: pl.DataFrame) -> None:
    vs = ValidationSet.from_mapping({"a": 'pl.col("x") > 1', "b": 'pl.col("in.city").cast(pl.Int64) > 1'})
    result = vs.evaluate(df)
    assert set(result.errors) == {"a", "b"}
    assert result.frame["anomaly.count"].to_list() == [0] * df.height
    assert failure_counts(result) == {"a": 0, "b": 0, "__any__": 0}


def test_same_validation_errors_only_on_batches_where_it_fails(df: pl.DataFrame) -> None:
    vs = ValidationSet.from_mapping({"v": 'pl.col("in.extra") > 1'})
    assert "v" in vs.evaluate(df).errors
    ok = vs.evaluate(df.with_columns(pl.Series("in.extra", [0, 2, 0, 2, 0, None])))
    assert ok.errors == {}
    assert ok.frame["anomaly.v"].to_list() == [False, True, False, True, False, False]


# --- rejected constructs -------------------------------------------------------------------------

REJECTED: list[tuple[str, str]] = [
    ('pl.col("a").__class__', "dunder attribute '__class__'"),
    ('pl.col("a").__class__.__bases__[0]', "dunder attribute"),
    ('__import__("os").system("true")', "dunder name '__import__'"),
    ("pl._private > 1", "private attribute '_private'"),
    ('open("x")', "name 'open' is not allowed"),
    ('eval("1")', "name 'eval' is not allowed"),
    ('polars.col("a") > 1', "name 'polars' is not allowed"),
    ("x > 1", "name 'x' is not allowed"),
    ('pl.col("a").map_elements(lambda x: x) > 1', "method .map_elements() is not allowed"),
    ('pl.col("a").map_batches(print)', "method .map_batches() is not allowed"),
    ('pl.col("a").mean() > 1', "method .mean() is not allowed"),
    ('pl.col("a").len() > 1', "method .len() is not allowed"),
    ('pl.col("a").fill_null(strategy="forward") > 1', "keyword argument 'strategy' is not allowed"),
    ('pl.col("a").list.eval(pl.element() > 1)', "method .list.eval() is not allowed"),
    ('pl.col("a").str.json_decode()', "method .str.json_decode() is not allowed"),
    ('pl.col("a").struct.field("x") > 1', "method .struct() is not allowed"),
    ("pl.read_csv('/etc/passwd')", "pl.read_csv is not allowed"),
    ("pl.sql_expr('a > 1')", "pl.sql_expr is not allowed"),
    ('lambda: pl.col("a")', "lambda is not allowed"),
    ("[x for x in [1]]", "comprehensions are not allowed"),
    ("(x for x in [1])", "generator expressions are not allowed"),
    ("{x: 1 for x in [1]}", "comprehensions are not allowed"),
    ('pl.col("a")[0] > 1', "subscripts"),
    ('f"{pl}"', "f-strings are not allowed"),
    ('(y := pl.col("a")) > 1', "assignment expressions (:=) are not allowed"),
    ('pl.col(*["a"])', "starred arguments"),
    ('pl.col("a").is_in(**{"other": [1]})', "**kwargs are not allowed"),
    ('(pl.col("a") > 1) and (pl.col("b") < 2)', "'and'/'or' are not allowed; use & and |"),
    ('(pl.col("a") > 1) or (pl.col("b") < 2)', "use & and |"),
    ('not (pl.col("a") > 1)', "'not' is not allowed; use ~"),
    ('pl.col("a") is None', "'is' is not allowed"),
    ('pl.col("a") in [1, 2]', "'in' is not allowed"),
    ('pl.col("a") if True else pl.col("b")', "use pl.when"),
    ('pl.col("a") ^ pl.col("b")', "operator BitXor is not allowed"),
    ('pl.col("a") >> 1', "operator RShift is not allowed"),
    ('+pl.col("a") > 1', "unary operator UAdd is not allowed"),
    ('pl.col("a") == {1}', "set literals are not allowed"),
    ('pl.col("a") == {"k": 1}', "dict literals are not allowed"),
    ('pl.col("a") == [1]', "must be an expression or a constant"),
    ('pl.col("a") > 1j', "complex constants are not allowed"),
    ('pl.col("a") > b"x"', "bytes constants are not allowed"),
    ('pl.col("a") > ...', "ellipsis constants are not allowed"),
    ('pl.col("a") > 123456789012345678901234567890', "out of the 64-bit range"),
    ("pl.col(1) > 0", "argument of pl.col() must be a string literal"),
    ("pl.col() > 0", "pl.col() needs at least 1 argument"),
    ('pl.col("a").is_null', "missing call parentheses"),
    ("pl.col", "missing call parentheses"),
    ('pl.col("a").list', "the .list namespace"),
    ("pl", "the module pl"),
    ("1", "must be a polars expression"),
    ('pl.col("a").abs(1)', ".abs() takes no positional arguments"),
    ('pl.col("a").round("x")', "must be an integer constant"),
    ('pl.col("a").is_between(1)', "missing required argument 'upper_bound'"),
    ('pl.col("a").is_between(1, 2, closed="sideways")', "one of 'both', 'left', 'right', 'none'"),
    ('pl.col("a").cast(int)', "name 'int' is not allowed"),
    ('pl.col("a").cast("Float64")', "must be a polars data type"),
    ('pl.col("a").cast(pl.Object)', "pl.Object is not allowed"),
    ('pl.col("a").cast(pl.Float64, strict=1)', "must be True or False"),
    ('pl.col("a").list.get(0, foo=1)', "keyword argument 'foo' is not allowed for .list.get()"),
    ('pl.col("a").list.get(1.5)', "integer constant or an expression"),
    ('pl.col("a").is_in([1, pl.col("b")])', "list/tuple items must be constants"),
    ("pl.lit([1, 2])", "must be a constant"),
    ('pl.col("a").str.contains("^a.*$")', "regex metacharacters"),
    ('pl.when(pl.col("a") > 1)', "unfinished pl.when"),
    ('pl.when(pl.col("a") > 1).otherwise(1)', "must be followed by .then"),
    ('(pl.col("a") > 1).otherwise(1)', "method .otherwise() is not allowed"),
    ('"abc".upper() == "ABC"', "attribute .upper is not allowed on a str constant"),
    ("pl.Float64() == 1", "calling the data type pl.Float64 is not allowed"),
    ("-'a'", "unary - is not allowed"),
    ('pl.col("a") > 1; import os', "syntax error"),
    ('pl.col("a") >', "syntax error"),
    ("pl.col('a'", "syntax error"),
    ("", "expression is empty"),
    ("   \n  ", "expression is empty"),
    ("pl.col('a')\x00", "syntax error"),
]


@pytest.mark.parametrize(("source", "fragment"), REJECTED, ids=[s for s, _ in REJECTED])
def test_rejected_construct(source: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_expression(source)
    assert fragment in str(info.value)


def test_error_positions_point_at_the_offending_construct() -> None:
    cases = {
        'pl.col("a").__class__': "__class__",
        'pl.col("a").map_elements(f)': "map_elements",
        '(pl.col("a") > 1) & open("x")': "open",
        'pl.col("é") > pl.foo': "foo",
        '(pl.col("a") > 1) & (pl.col("b") >> 2)': ">>",
        'pl.col("a").round("x")': '"x"',
        'pl.col("a").is_in([1, lambda: 2])': "lambda",
        '  pl.col("a")[0]': 'pl.col("a")[0]',
    }
    for source, construct in cases.items():
        with pytest.raises(ValidationError) as info:
            parse_expression(source)
        assert info.value.position == source.index(construct), (source, info.value)
        assert f"(at position {info.value.position})" in str(info.value)


def test_multiline_positions() -> None:
    source = '(\n  (pl.col("é") > 1)\r\n  & (pl.col("b")\n     .bogus())\n)'
    with pytest.raises(ValidationError) as info:
        parse_expression(source)
    assert info.value.position == source.index("bogus")


def test_too_long_input() -> None:
    source = 'pl.col("a") > ' + "1 + " * (MAX_EXPRESSION_CHARS // 4) + "1"
    with pytest.raises(ValidationError, match="too long"):
        parse_expression(source)


@pytest.mark.parametrize(
    "source",
    [
        "~" * 150 + 'pl.col("a")',
        "-" * 150 + "1",
        'pl.col("a")' + " + 1" * 150,
        'pl.col("a")' + ".abs()" * 120,
        "(" * 250 + 'pl.col("a")' + ")" * 250,
        "[" * 150 + "]" * 150,
    ],
    ids=["invert", "neg", "binop-chain", "method-chain", "parens", "lists"],
)
def test_deeply_nested_input(source: str) -> None:
    with pytest.raises(ValidationError, match=r"nested too deeply|too many nested"):
        parse_expression(source)


def test_too_many_nodes() -> None:
    source = "pl.any_horizontal(" + ",".join(["1"] * 1200) + ")"
    assert len(source) < MAX_EXPRESSION_CHARS
    with pytest.raises(ValidationError, match="too large"):
        parse_expression(source)


def test_non_string_input() -> None:
    with pytest.raises(ValidationError, match="must be a string"):
        parse_expression(b"pl.col('a') > 1")  # type: ignore[arg-type]


def test_constant_arithmetic_is_not_evaluated_in_python() -> None:
    # Would hang if folded in Python; as a polars literal expression it is harmless.
    expr = parse_expression("2 ** 100000000 ** 100000000 > pl.col('a')")
    assert isinstance(expr, pl.Expr)


# --- names and the `name = expr` form -------------------------------------------------------------


def test_parse_validation() -> None:
    name, expr = parse_validation('fraud = pl.col("out.dense_1").list.get(0) > 0.9')
    assert name == "fraud"
    assert expr.meta.eq(pl.col("out.dense_1").list.get(0, null_on_oob=True) > 0.9)
    name, _ = parse_validation("  too_low=pl.col('out.dense_1').list.get(0) < 0.05,  ")
    assert name == "too_low"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('count = pl.col("a") > 1', "reserved"),
        ('1bad = pl.col("a") > 1', "syntax error"),
        ('pl.col("a") > 1', "must have the form: name = <polars expression>"),
        ('a = b = pl.col("a") > 1', "must have the form"),
        ('a.b = pl.col("a") > 1', "must have the form"),
        ('a += pl.col("a")', "must have the form"),
        ("a = 1\nb = 2", "must have the form"),
        ("import os", "must have the form"),
        ('__any__ = pl.col("a") > 1', "reserved"),
        ('ok = pl.col("a").__dict__', "dunder attribute"),
        ('ok = open("f")', "name 'open' is not allowed"),
        ("x" * 65 + ' = pl.col("a") > 1', "invalid validation name"),
    ],
)
def test_parse_validation_rejects(text: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_validation(text)
    assert fragment in str(info.value)


def test_parse_validation_positions_refer_to_the_whole_text() -> None:
    text = 'fraud = pl.col("x").bogus()'
    with pytest.raises(ValidationError) as info:
        parse_validation(text)
    assert info.value.position == text.index("bogus")


@pytest.mark.parametrize(
    "name", ["count", "", "1abc", "a-b", "a b", "anomaly.x", "é", "x" * 65, "a\n", "__any__", "__x"]
)
def test_bad_names_rejected(name: str) -> None:
    with pytest.raises(ValidationError, match=r"reserved|invalid validation name"):
        Validation.create(name, 'pl.col("a") > 1')


@pytest.mark.parametrize("name", ["fraud", "_x", "too_low", "Count", "x" * 64, "a1_B2"])
def test_good_names(name: str) -> None:
    assert validate_name(name) == name
    assert Validation.create(name, 'pl.col("a") > 1').column == f"anomaly.{name}"


def test_validation_object() -> None:
    v = Validation.create("fraud", 'pl.col("out.dense_1").list.get(0) > 0.9')
    assert v.expression == 'pl.col("out.dense_1").list.get(0) > 0.9'
    assert isinstance(v.expr, pl.Expr)
    assert v == Validation("fraud", 'pl.col("out.dense_1").list.get(0) > 0.9')
    assert hash(v) == hash(Validation("fraud", v.expression))
    assert Validation.from_text(v.to_text()) == v
    with pytest.raises(ValidationError, match="not allowed"):
        Validation("ok", "open('x')")  # direct construction validates too
    with pytest.raises(AttributeError):
        v.name = "other"  # type: ignore[misc]


def test_validation_set_mapping_behaviour() -> None:
    a = Validation.create("a", 'pl.col("x") > 1')
    b = Validation.create("b", 'pl.col("x") < 0')
    a2 = Validation.create("a", 'pl.col("x") > 2')
    vs = ValidationSet([a, b])
    assert list(vs) == ["a", "b"] and len(vs) == 2 and vs["a"] is a and "b" in vs
    replaced = vs.with_validation(a2)
    assert list(replaced) == ["a", "b"] and replaced["a"] is a2
    assert vs["a"] is a  # immutable: the original is unchanged
    added = vs.with_validation(Validation.create("c", 'pl.col("x") == 0'))
    assert list(added) == ["a", "b", "c"]
    assert list(added.without("a")) == ["b", "c"]
    with pytest.raises(KeyError):
        vs.without("nope")
    assert ValidationSet([a, b, a2])["a"] is a2
    assert ValidationSet.from_mapping(vs.to_dict()) == vs
    with pytest.raises(TypeError):
        ValidationSet(["pl.col('x') > 1"])  # type: ignore[list-item]


def test_replaced_validation_is_evaluated_with_new_expression() -> None:
    batch = pl.DataFrame({"x": [0, 1, 2, 3]})
    vs = ValidationSet.from_mapping({"v": 'pl.col("x") > 1'})
    assert vs.evaluate(batch).frame["anomaly.v"].to_list() == [False, False, True, True]
    vs = vs.with_validation(Validation.create("v", 'pl.col("x") > 2'))
    assert vs.evaluate(batch).frame["anomaly.v"].to_list() == [False, False, False, True]


def test_failure_counts_on_handmade_result() -> None:
    frame = pl.DataFrame(
        {
            "anomaly.count": pl.Series([0, 2, 1], dtype=pl.UInt32),
            "anomaly.a": [False, True, True],
            "anomaly.b": [False, True, False],
        }
    )
    assert failure_counts(ValidationResult(frame)) == {"a": 2, "b": 1, "__any__": 2}


def test_evaluate_does_not_mutate_input(df: pl.DataFrame) -> None:
    before = df.clone()
    ValidationSet.from_mapping({"v": 'pl.col("in.a") > 1', "w": 'pl.col("missing") > 1'}).evaluate(df)
    assert_frame_equal(df, before)


# --- fuzzing: parse_expression raises ValidationError or returns an Expr, nothing else -------------

_TOKENS = [
    "pl",
    ".",
    "col",
    "(",
    ")",
    '"in.a"',
    "'x'",
    ",",
    "list",
    "get",
    "str",
    "dt",
    "0",
    "1.5",
    "-",
    "+",
    "*",
    "/",
    "**",
    "//",
    "%",
    "<",
    ">",
    "==",
    "!=",
    "<=",
    "&",
    "|",
    "~",
    " ",
    "[",
    "]",
    "{",
    "}",
    ":",
    "lambda",
    "and",
    "not",
    "is",
    "in",
    "if",
    "else",
    "__class__",
    "__import__",
    "when",
    "then",
    "otherwise",
    "lit",
    "True",
    "None",
    "is_in",
    "cast",
    "Float64",
    "=",
    "strict",
    "null_on_oob",
    "any_horizontal",
    "abs",
    "fill_null",
    "_",
    "\\",
    "\n",
    "#",
    "f'",
    "{pl}",
    "'",
    '"',
    "\x00",
    "é",
    "is_between",
    "closed",
    "contains",
    "literal",
    "round",
    "clip",
    "log",
    "1e400",
    "99999999999999999999",
]


@pytest.mark.filterwarnings("ignore:Comparisons with None")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=80), st.lists(st.sampled_from(_TOKENS), max_size=40).map("".join)))
def test_fuzz_parse_expression_only_raises_validation_error(source: str) -> None:
    try:
        result = parse_expression(source)
    except ValidationError as exc:
        assert str(exc)
    else:
        assert isinstance(result, pl.Expr)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.sampled_from(['"in.a"', '"in.b"', '"in.n"', '"in.city"', '"missing"', '"out.dense_1"']),
        min_size=1,
        max_size=3,
    ),
    st.sampled_from([" > 1", ".is_null()", ".list.get(0) > 0.5", ".cast(pl.Int64) > 0", ".str.len_chars() > 3", ""]),
)
def test_fuzz_evaluate_never_raises(columns: list[str], suffix: str) -> None:
    df = _frame()
    vs = ValidationSet(Validation.create(f"v{i}", f"pl.col({c}){suffix}") for i, c in enumerate(columns))
    result = vs.evaluate(df)
    assert result.frame.height == df.height
    assert result.frame[ANOMALY_COUNT_COLUMN].dtype == pl.UInt32
    for name in vs:
        col = result.frame[f"anomaly.{name}"]
        assert col.dtype == pl.Boolean and col.null_count() == 0
        if name in result.errors:
            assert not col.any()
