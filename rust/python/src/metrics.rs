//! Bindings of `recrl_core::metrics`.
//!
//! Labels arrive as uint8, float32 or float64 and scores as float32 or float64; each pair of
//! dtypes runs its own monomorphised kernel, so no input is copied or converted.

use numpy::PyReadonlyArray1;
use pyo3::prelude::*;
use recrl_core::metrics::{self, GroupWeighting};

use crate::errors::run_detached;

/// A label array of one of the accepted dtypes.
#[derive(FromPyObject)]
enum Labels<'py> {
    U8(PyReadonlyArray1<'py, u8>),
    F32(PyReadonlyArray1<'py, f32>),
    F64(PyReadonlyArray1<'py, f64>),
}

/// A score array of one of the accepted dtypes.
#[derive(FromPyObject)]
enum Scores<'py> {
    F32(PyReadonlyArray1<'py, f32>),
    F64(PyReadonlyArray1<'py, f64>),
}

/// Bind `$l` and `$s` to the slices of the label and score arrays, whatever their dtypes, and
/// evaluate `$body` with them.
macro_rules! with_slices {
    ($labels:expr, $scores:expr, |$l:ident, $s:ident| $body:expr) => {
        match ($labels, $scores) {
            (Labels::U8(a), Scores::F32(b)) => {
                let ($l, $s) = (a.as_slice()?, b.as_slice()?);
                $body
            }
            (Labels::U8(a), Scores::F64(b)) => {
                let ($l, $s) = (a.as_slice()?, b.as_slice()?);
                $body
            }
            (Labels::F32(a), Scores::F32(b)) => {
                let ($l, $s) = (a.as_slice()?, b.as_slice()?);
                $body
            }
            (Labels::F32(a), Scores::F64(b)) => {
                let ($l, $s) = (a.as_slice()?, b.as_slice()?);
                $body
            }
            (Labels::F64(a), Scores::F32(b)) => {
                let ($l, $s) = (a.as_slice()?, b.as_slice()?);
                $body
            }
            (Labels::F64(a), Scores::F64(b)) => {
                let ($l, $s) = (a.as_slice()?, b.as_slice()?);
                $body
            }
        }
    };
}

/// AUC with ties counted as 1/2; returns (auc, positives, negatives), auc NaN for one class.
#[pyfunction]
fn auc(py: Python<'_>, labels: Labels<'_>, scores: Scores<'_>) -> PyResult<(f64, u64, u64)> {
    let result = with_slices!(labels, scores, |l, s| run_detached(py, || metrics::auc(
        l, s
    ))?);
    Ok((result.value, result.positives, result.negatives))
}

/// Grouped AUC; returns (value, groups_used, groups_skipped).
#[pyfunction]
#[pyo3(signature = (labels, scores, groups, *, weighting="size"))]
fn grouped_auc(
    py: Python<'_>,
    labels: Labels<'_>,
    scores: Scores<'_>,
    groups: PyReadonlyArray1<'_, i64>,
    weighting: &str,
) -> PyResult<(f64, u64, u64)> {
    let weighting = match weighting {
        "size" => GroupWeighting::Size,
        "uniform" => GroupWeighting::Uniform,
        other => {
            return Err(crate::errors::to_py_err(recrl_core::Error::invalid(
                "weighting",
                format!("expected \"size\" or \"uniform\", got {other:?}"),
            )))
        }
    };
    let groups = groups.as_slice()?;
    let result = with_slices!(labels, scores, |l, s| run_detached(py, || {
        metrics::grouped_auc(l, s, groups, weighting)
    })?);
    Ok((result.value, result.groups_used, result.groups_skipped))
}

/// Mean binary cross-entropy with probabilities clipped to [eps, 1 - eps].
#[pyfunction]
#[pyo3(signature = (labels, scores, *, eps=1e-7))]
fn logloss(py: Python<'_>, labels: Labels<'_>, scores: Scores<'_>, eps: f64) -> PyResult<f64> {
    with_slices!(labels, scores, |l, s| run_detached(
        py,
        || metrics::logloss(l, s, eps)
    ))
}

/// Mean over sessions of the within-session mean cross-entropy; returns (value, sessions).
#[pyfunction]
#[pyo3(signature = (labels, scores, sessions, *, eps=1e-7))]
fn session_logloss(
    py: Python<'_>,
    labels: Labels<'_>,
    scores: Scores<'_>,
    sessions: PyReadonlyArray1<'_, i64>,
    eps: f64,
) -> PyResult<(f64, u64)> {
    let sessions = sessions.as_slice()?;
    let result = with_slices!(labels, scores, |l, s| run_detached(py, || {
        metrics::session_logloss(l, s, sessions, eps)
    })?);
    Ok((result.value, result.sessions))
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(auc, module)?)?;
    module.add_function(wrap_pyfunction!(grouped_auc, module)?)?;
    module.add_function(wrap_pyfunction!(logloss, module)?)?;
    module.add_function(wrap_pyfunction!(session_logloss, module)?)?;
    Ok(())
}
