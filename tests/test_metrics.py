import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recrl.errors import InvalidArgumentError, InvalidDataError, ShapeError
from recrl.evaluation import metrics
from recrl.evaluation.metrics import UndefinedMetricWarning
from tests.reference import metrics as reference

# Contract cases.


def test_auc_single_class_is_nan_with_warning():
    with pytest.warns(UndefinedMetricWarning, match="3 positive and 0 negative"):
        value = metrics.auc(np.array([1, 1, 1], np.uint8), np.array([0.1, 0.2, 0.3]))
    assert math.isnan(value)


def test_auc_tie_counts_half():
    assert metrics.auc([1, 0], [0.5, 0.5]) == 0.5


def test_auc_ties_independent_of_row_order():
    labels = [1, 0, 1, 0]
    scores = [0.8, 0.8, 0.3, 0.1]
    for order in itertools.permutations(range(4)):
        permuted_labels = np.array([labels[i] for i in order], np.float32)
        permuted_scores = np.array([scores[i] for i in order], np.float64)
        assert metrics.auc(permuted_labels, permuted_scores) == 0.625


def test_auc_nan_score_names_row():
    with pytest.raises(InvalidDataError, match="column scores, row 2"):
        metrics.auc([1, 0, 1], [0.1, 0.2, np.nan])


@pytest.mark.parametrize("bad_label", [2, -1, 0.5, np.nan])
def test_auc_label_outside_binary_names_row(bad_label):
    labels = np.array([1, 0, bad_label, 1], dtype=np.float64)
    with pytest.raises(InvalidDataError, match="column labels, row 2"):
        metrics.auc(labels, [0.1, 0.2, 0.3, 0.4])


def test_integer_label_outside_binary_names_row():
    with pytest.raises(InvalidDataError, match="column labels, row 1: expected 0 or 1, got 300"):
        metrics.auc(np.array([0, 300, 1], np.int64), [0.1, 0.2, 0.3])


@pytest.mark.parametrize(
    "function",
    [
        metrics.auc,
        metrics.logloss,
        lambda labels, scores: metrics.grouped_auc(labels, scores, np.array([], np.int64)),
        lambda labels, scores: metrics.session_logloss(labels, scores, np.array([], np.int64)),
    ],
)
def test_empty_input_rejected(function):
    with pytest.raises(InvalidArgumentError, match="labels: expected at least one row"):
        function(np.array([], np.uint8), np.array([], np.float32))


def test_length_mismatch_rejected():
    with pytest.raises(ShapeError, match="scores: expected length 3, got length 2"):
        metrics.auc([1, 0, 1], [0.1, 0.2])
    with pytest.raises(ShapeError, match="groups: expected length 2, got length 1"):
        metrics.grouped_auc([1, 0], [0.1, 0.2], [5])


def test_two_dimensional_labels_rejected():
    with pytest.raises(ShapeError, match=r"labels: expected a 1-D array"):
        metrics.auc(np.zeros((2, 2)), np.zeros(4))


@pytest.mark.parametrize("label_dtype", [np.uint8, np.bool_, np.int64, np.float32, np.float64])
@pytest.mark.parametrize("score_dtype", [np.float32, np.float64])
def test_auc_accepts_every_dtype(label_dtype, score_dtype):
    labels = np.array([1, 0, 1, 0], dtype=label_dtype)
    scores = np.array([0.8, 0.8, 0.3, 0.1], dtype=score_dtype)
    assert metrics.auc(labels, scores) == 0.625


def test_auc_infinite_scores_allowed():
    assert metrics.auc([1, 0, 1], [np.inf, -np.inf, 0.0]) == 1.0


# Grouped AUC.


def test_grouped_auc_unsorted_groups():
    labels = [1, 0, 1, 1, 0, 1, 0]
    scores = [0.9, 0.1, 0.5, 0.2, 0.7, 0.6, 0.6]
    groups = np.array([7, 7, 3, -1, 7, 3, 3], np.int64)
    # Group 7 (rows 0, 1, 4): AUC 1, 3 rows. Group 3 (rows 2, 5, 6): positives 0.5 and 0.6
    # against negative 0.6 give 0 + 1/2 over 2 pairs, AUC 0.25, 3 rows. Group -1: skipped.
    result = metrics.grouped_auc(labels, scores, groups)
    assert result.value == pytest.approx((3 * 1.0 + 3 * 0.25) / 6)
    assert result.groups_used == 2
    assert result.groups_skipped == 1


def test_grouped_auc_uniform_weighting():
    labels = [1, 0, 1, 0, 0]
    scores = [0.9, 0.1, 0.1, 0.9, 0.5]
    groups = [1, 1, 2, 2, 2]
    # Group 1: AUC 1 over 2 rows; group 2: AUC 0 over 3 rows.
    assert metrics.grouped_auc(labels, scores, groups).value == pytest.approx(2 / 5)
    uniform = metrics.grouped_auc(labels, scores, groups, weighting="uniform")
    assert uniform.value == pytest.approx(0.5)


def test_grouped_auc_unknown_weighting_rejected():
    with pytest.raises(InvalidArgumentError, match="weighting"):
        metrics.grouped_auc([1, 0], [0.1, 0.2], [1, 1], weighting="rows")  # type: ignore[arg-type]


def test_grouped_auc_all_groups_skipped_warns():
    with pytest.warns(UndefinedMetricWarning, match="none of 2 groups"):
        result = metrics.grouped_auc([1, 0], [0.1, 0.2], [1, 2])
    assert math.isnan(result.value)
    assert result.groups_skipped == 2


def test_grouped_auc_huge_ids():
    groups = np.array([np.iinfo(np.int64).max, np.iinfo(np.int64).min] * 2, np.int64)
    result = metrics.grouped_auc([1, 1, 0, 0], [0.9, 0.1, 0.1, 0.9], groups)
    assert result.value == pytest.approx(0.5)
    assert result.groups_used == 2


# Logloss.


def test_logloss_clips_at_default_eps():
    assert metrics.logloss([1], [0.0]) == pytest.approx(-math.log(1e-7))
    assert metrics.logloss([0], [1.0]) == pytest.approx(-math.log(1e-7), rel=1e-6)


def test_logloss_probability_outside_unit_interval_names_row():
    with pytest.raises(InvalidDataError, match="column scores, row 1: expected a probability"):
        metrics.logloss([1, 0], [0.5, 1.5])


def test_logloss_invalid_eps_rejected():
    with pytest.raises(InvalidArgumentError, match="eps"):
        metrics.logloss([1, 0], [0.5, 0.5], eps=0.5)


def test_session_logloss_weighs_sessions_equally():
    # Session 2 has one row with loss -log(0.5); session 1 has two rows with losses -log(0.5).
    # A session with loss -log(0.9) shows the difference from the row mean.
    labels = [1, 1, 0, 1]
    scores = [0.5, 0.5, 0.5, 0.9]
    sessions = [2, 1, 1, 3]
    expected = (math.log(2) + math.log(2) - math.log(0.9)) / 3
    assert metrics.session_logloss(labels, scores, sessions) == pytest.approx(expected)


# Per-task metrics.


def test_task_metrics_are_per_task():
    labels = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], np.float32)
    scores = np.array([[0.9, 0.9], [0.1, 0.1], [0.8, 0.8], [0.2, 0.2]], np.float32)
    sessions = np.array([1, 1, 2, 2], np.int64)
    result = metrics.task_metrics(labels, scores, sessions, ["click", "like"])
    # Pooled over both tasks the AUC would be 0.5; per task it is 1 and 0.
    assert result["click"]["auc"] == 1.0
    assert result["like"]["auc"] == 0.0
    assert result["click"]["session_auc"] == 1.0
    assert result["click"]["logloss"] == pytest.approx(
        reference.logloss(labels[:, 0], scores[:, 0])
    )
    assert result["like"]["session_logloss"] == pytest.approx(
        reference.session_logloss(labels[:, 1], scores[:, 1], sessions)
    )


def test_task_metrics_undefined_auc_names_task_and_continues():
    labels = np.array([[1, 1], [1, 0], [1, 1]], np.uint8)
    scores = np.array([[0.2, 0.7], [0.4, 0.3], [0.6, 0.6]], np.float64)
    with pytest.warns(UndefinedMetricWarning, match="task 'follow'"):
        result = metrics.task_metrics(labels, scores, np.zeros(3, np.int64), ["follow", "click"])
    assert math.isnan(result["follow"]["auc"])
    assert result["click"]["auc"] == 1.0
    assert math.isfinite(result["follow"]["logloss"])


def test_task_metrics_bad_value_names_task():
    labels = np.array([[1, 0], [0, 1]], np.float32)
    scores = np.array([[0.5, 0.5], [0.5, np.nan]], np.float32)
    with pytest.raises(InvalidDataError, match="task 'like': column scores, row 1"):
        metrics.task_metrics(labels, scores, np.zeros(2, np.int64), ["click", "like"])


def test_task_metrics_shape_mismatch_rejected():
    with pytest.raises(ShapeError, match="task_names: expected 2 names"):
        metrics.task_metrics(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros(2, np.int64), ["a"])


# Properties against the references and scikit-learn (skipped where it is not installed).

# Scores from a small set make ties frequent; both dtypes share the values exactly.
tie_prone_scores = st.sampled_from([0.0, 0.125, 0.25, 0.5, 0.75, 1.0])
any_score = st.floats(min_value=0.0, max_value=1.0, allow_nan=False, width=32)
rows = st.lists(
    st.tuples(st.integers(0, 1), st.one_of(tie_prone_scores, any_score)), min_size=1, max_size=60
)
huge_ids = st.sampled_from([np.iinfo(np.int64).min, -1, 0, 3, np.iinfo(np.int64).max])


@settings(max_examples=200, deadline=None)
@given(rows=rows, score_dtype=st.sampled_from([np.float32, np.float64]))
def test_auc_matches_pairwise_reference(rows, score_dtype):
    labels = np.array([r[0] for r in rows], np.uint8)
    scores = np.array([r[1] for r in rows], score_dtype)
    expected = reference.auc(labels.tolist(), scores.tolist())
    if math.isnan(expected):
        with pytest.warns(UndefinedMetricWarning):
            assert math.isnan(metrics.auc(labels, scores))
        return
    assert metrics.auc(labels, scores) == pytest.approx(expected, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(rows=rows, score_dtype=st.sampled_from([np.float32, np.float64]))
def test_auc_matches_sklearn(rows, score_dtype):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    labels = np.array([r[0] for r in rows], np.uint8)
    scores = np.array([r[1] for r in rows], score_dtype)
    if labels.min() == labels.max():
        return
    expected = sklearn_metrics.roc_auc_score(labels, scores)
    assert metrics.auc(labels, scores) == pytest.approx(expected, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), rows=rows, weighting=st.sampled_from(["size", "uniform"]))
def test_grouped_auc_matches_reference(data, rows, weighting):
    labels = np.array([r[0] for r in rows], np.float32)
    scores = np.array([r[1] for r in rows], np.float64)
    groups = np.array(
        data.draw(st.lists(huge_ids, min_size=len(rows), max_size=len(rows))), np.int64
    )
    expected, used, skipped = reference.grouped_auc(
        labels.tolist(), scores.tolist(), groups.tolist(), weighting
    )
    if used == 0:
        with pytest.warns(UndefinedMetricWarning):
            result = metrics.grouped_auc(labels, scores, groups, weighting=weighting)
        assert math.isnan(result.value)
    else:
        result = metrics.grouped_auc(labels, scores, groups, weighting=weighting)
        assert result.value == pytest.approx(expected, abs=1e-12)
    assert (result.groups_used, result.groups_skipped) == (used, skipped)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), rows=rows)
def test_logloss_matches_reference_and_sklearn(data, rows):
    labels = np.array([r[0] for r in rows], np.uint8)
    scores = np.array([r[1] for r in rows], np.float64)
    sessions = np.array(
        data.draw(st.lists(huge_ids, min_size=len(rows), max_size=len(rows))), np.int64
    )
    assert metrics.logloss(labels, scores) == pytest.approx(
        reference.logloss(labels.tolist(), scores.tolist()), rel=1e-12
    )
    assert metrics.session_logloss(labels, scores, sessions) == pytest.approx(
        reference.session_logloss(labels.tolist(), scores.tolist(), sessions.tolist()), rel=1e-12
    )


@settings(max_examples=200, deadline=None)
@given(rows=rows)
def test_logloss_matches_sklearn(rows):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    labels = np.array([r[0] for r in rows], np.uint8)
    # scikit-learn clips with a different eps, so compare where no clipping happens.
    scores = np.clip(np.array([r[1] for r in rows], np.float64), 1e-3, 1 - 1e-3)
    expected = sklearn_metrics.log_loss(labels, scores, labels=[0, 1])
    assert metrics.logloss(labels, scores) == pytest.approx(expected, rel=1e-9)


def test_large_input_matches_sklearn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    labels = (rng.random(300_000) < 0.2).astype(np.uint8)
    scores = np.round(rng.random(300_000), 3).astype(np.float32)
    assert metrics.auc(labels, scores) == pytest.approx(
        sklearn_metrics.roc_auc_score(labels, scores), abs=1e-12
    )
    assert metrics.logloss(labels, scores) == pytest.approx(
        sklearn_metrics.log_loss(labels, np.clip(scores.astype(np.float64), 1e-7, 1 - 1e-7)),
        rel=1e-9,
    )
