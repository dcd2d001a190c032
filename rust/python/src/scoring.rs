//! Bindings of `recrl_core::scoring`: the `Scorer` class and the fusion and top-k functions.

use std::path::PathBuf;

use numpy::ndarray::Array2;
use numpy::{
    Element, IntoPyArray, PyArray1, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use recrl_core::scoring::{self, Candidates, FusionMode, NonFinite, Policy, Requests};
use recrl_core::Error;

use crate::errors::{run_detached, to_py_err};

/// An array argument after its dtype was checked: the borrowed array and its shape.
struct Checked<'py, T: Element> {
    array: PyReadonlyArrayDyn<'py, T>,
    shape: Vec<usize>,
}

impl<'py, T: Element> Checked<'py, T> {
    fn slice(&self, argument: &str) -> PyResult<&[T]> {
        self.array.as_slice().map_err(|_| {
            to_py_err(Error::invalid(
                argument,
                "expected a C-contiguous array; pass numpy.ascontiguousarray(...)",
            ))
        })
    }
}

fn shape_text(shape: &[usize]) -> String {
    match shape {
        [single] => format!("({single},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Cast `value` to a NumPy array of `T` with one of `ndims` dimensions, or raise `TypeError`
/// (wrong type or dtype) or `ShapeError` (wrong number of dimensions) naming `argument` and the
/// `expected` shape.
fn checked_array<'py, T: Element>(
    value: &Bound<'py, PyAny>,
    argument: &str,
    dtype: &str,
    ndims: &[usize],
    expected: &str,
) -> PyResult<Checked<'py, T>> {
    let Ok(array) = value.cast::<PyArrayDyn<T>>() else {
        let received = match value.cast::<PyUntypedArray>() {
            Ok(untyped) => format!(
                "a {} array of shape {}",
                untyped.dtype().str()?,
                shape_text(untyped.shape())
            ),
            Err(_) => format!("an object of type {}", value.get_type().name()?),
        };
        return Err(PyTypeError::new_err(format!(
            "{argument}: expected a {dtype} NumPy array of shape {expected}, got {received}"
        )));
    };
    let shape = array.shape().to_vec();
    if !ndims.contains(&shape.len()) {
        return Err(to_py_err(Error::shape(
            argument,
            format!("a {dtype} array of shape {expected}"),
            format!("shape {}", shape_text(&shape)),
        )));
    }
    Ok(Checked {
        array: array.readonly(),
        shape,
    })
}

/// Check that `k` is a usable number of candidates to keep.
fn candidate_count(k: i64) -> PyResult<usize> {
    usize::try_from(k).map_err(|_| {
        to_py_err(recrl_core::Error::invalid(
            "k",
            format!("expected a non-negative number of candidates, got {k}"),
        ))
    })
}

fn non_finite_policy(invalid: &str) -> PyResult<NonFinite> {
    NonFinite::from_name(invalid).map_err(to_py_err)
}

fn int64_result<'py>(py: Python<'py>, indices: Vec<u32>) -> Bound<'py, PyArray1<i64>> {
    indices
        .into_iter()
        .map(i64::from)
        .collect::<Vec<_>>()
        .into_pyarray(py)
}

/// Indices int64 [k'] and scores float32 [k'] of the best candidates.
type TopK<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<f32>>);

/// A trained policy loaded from a file written by `recrl.serving.export`, scoring candidates
/// without torch. Immutable after loading, so one instance can be shared by threads.
#[pyclass(frozen, module = "recrl._core")]
pub struct Scorer {
    policy: Policy,
}

/// The optional per-request inputs of a categorical policy with a state encoder.
struct Extras<'py> {
    categorical: Option<Checked<'py, i64>>,
    history: Option<Checked<'py, i64>>,
}

impl Scorer {
    fn extras<'py>(
        &self,
        categorical: Option<&Bound<'py, PyAny>>,
        history: Option<&Bound<'py, PyAny>>,
        batch: bool,
    ) -> PyResult<Extras<'py>> {
        let ndim = if batch { 2 } else { 1 };
        let fields = self.policy.categorical_fields();
        let categorical = match categorical {
            Some(value) => Some(checked_array::<i64>(
                value,
                "categorical",
                "int64",
                &[ndim],
                &if batch {
                    format!("(B, {fields})")
                } else {
                    format!("({fields},)")
                },
            )?),
            None if fields > 0 => {
                return Err(to_py_err(Error::invalid(
                    "categorical",
                    format!("required: this policy's state has {fields} categorical fields"),
                )))
            }
            None => None,
        };
        let history = match history {
            Some(value) => Some(checked_array::<i64>(
                value,
                "history",
                "int64",
                &[ndim],
                if batch { "(B, L)" } else { "(L,)" },
            )?),
            None => None,
        };
        Ok(Extras {
            categorical,
            history,
        })
    }

    fn state<'py>(
        &self,
        state: Option<&Bound<'py, PyAny>>,
        batch: bool,
    ) -> PyResult<Option<Checked<'py, f32>>> {
        let dim = self.policy.state_dim();
        let (argument, expected) = if batch {
            ("states", format!("(B, {dim})"))
        } else {
            ("state", format!("({dim},)"))
        };
        match state {
            Some(value) => {
                let checked = checked_array::<f32>(
                    value,
                    argument,
                    "float32",
                    &[usize::from(batch) + 1],
                    &expected,
                )?;
                if checked.shape.last() != Some(&dim) {
                    return Err(to_py_err(Error::shape(
                        argument,
                        format!("shape {expected}"),
                        format!("shape {}", shape_text(&checked.shape)),
                    )));
                }
                Ok(Some(checked))
            }
            None if dim == 0 => Ok(None),
            None => Err(to_py_err(Error::invalid(
                argument,
                format!("required: expected a float32 array of shape {expected}"),
            ))),
        }
    }

    /// Check the candidates and return them with the number of requests and candidates each.
    fn candidates<'py>(
        &self,
        candidates: &Bound<'py, PyAny>,
        batch: bool,
    ) -> PyResult<CheckedCandidates<'py>> {
        let width = self.policy.candidate_width();
        let extra = usize::from(batch);
        if self.policy.kind() == "categorical" {
            let expected = if batch { "(B, C)" } else { "(C,)" };
            let ids =
                checked_array::<i64>(candidates, "candidates", "int64", &[1 + extra], expected)?;
            return Ok(CheckedCandidates::Ids(ids));
        }
        let expected = if batch {
            format!("(B, C, {width})")
        } else {
            format!("(C, {width})")
        };
        let rows =
            checked_array::<f32>(candidates, "candidates", "float32", &[2 + extra], &expected)?;
        if rows.shape.last() != Some(&width) {
            return Err(to_py_err(Error::shape(
                "candidates",
                format!("shape {expected}"),
                format!("shape {}", shape_text(&rows.shape)),
            )));
        }
        Ok(CheckedCandidates::Rows(rows))
    }
}

enum CheckedCandidates<'py> {
    Ids(Checked<'py, i64>),
    Rows(Checked<'py, f32>),
}

impl<'py> CheckedCandidates<'py> {
    fn shape(&self) -> &[usize] {
        match self {
            CheckedCandidates::Ids(ids) => &ids.shape,
            CheckedCandidates::Rows(rows) => &rows.shape,
        }
    }

    fn view(&self, width: usize) -> PyResult<Candidates<'_>> {
        Ok(match self {
            CheckedCandidates::Ids(ids) => Candidates::Ids(ids.slice("candidates")?),
            CheckedCandidates::Rows(rows) => Candidates::Rows {
                values: rows.slice("candidates")?,
                width,
            },
        })
    }
}

/// Is `value` a NumPy array (of any dtype) without elements?
fn is_empty_array(value: &Bound<'_, PyAny>) -> bool {
    value
        .cast::<PyUntypedArray>()
        .map(|array| array.len() == 0 && array.ndim() == 1)
        .unwrap_or(false)
}

#[pymethods]
impl Scorer {
    /// Load a policy file; executes no code from the file.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Scorer> {
        let policy = run_detached(py, || Policy::load(&path))?;
        Ok(Scorer { policy })
    }

    /// `"categorical"`, `"mlp"` or `"fusion"`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.policy.kind()
    }

    /// S, the width of each request's state.
    #[getter]
    fn state_dim(&self) -> usize {
        self.policy.state_dim()
    }

    /// Values per candidate row (0 when candidates are item ids).
    #[getter]
    fn candidate_width(&self) -> usize {
        self.policy.candidate_width()
    }

    /// Number of categorical codes each request carries.
    #[getter]
    fn categorical_fields(&self) -> usize {
        self.policy.categorical_fields()
    }

    /// Whether each request carries a history of item ids.
    #[getter]
    fn uses_history(&self) -> bool {
        self.policy.uses_history()
    }

    /// The JSON description stored in the file.
    #[getter]
    fn metadata(&self) -> &str {
        self.policy.metadata()
    }

    /// Candidate ids not found in the item vocabulary since loading.
    #[getter]
    fn unknown_candidates(&self) -> u64 {
        self.policy.unknown_candidates()
    }

    /// History ids not found in the item vocabulary since loading.
    #[getter]
    fn unknown_history(&self) -> u64 {
        self.policy.unknown_history()
    }

    /// Score the candidates of one request; returns float32 [C].
    #[pyo3(signature = (state, candidates, *, categorical=None, history=None, invalid="raise"))]
    fn score<'py>(
        &self,
        py: Python<'py>,
        state: Option<&Bound<'py, PyAny>>,
        candidates: &Bound<'py, PyAny>,
        categorical: Option<&Bound<'py, PyAny>>,
        history: Option<&Bound<'py, PyAny>>,
        invalid: &str,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let (scores, _) =
            self.score_one(py, state, candidates, categorical, history, invalid, None)?;
        Ok(scores.into_pyarray(py))
    }

    /// Score one request and return (indices int64 [k'], scores float32 [k']) of its best
    /// `k' = min(k, C)` candidates, best first, ties by the lower index, NaN scores last.
    #[pyo3(signature = (state, candidates, k, *, categorical=None, history=None, invalid="raise"))]
    #[allow(clippy::too_many_arguments)]
    fn top_k<'py>(
        &self,
        py: Python<'py>,
        state: Option<&Bound<'py, PyAny>>,
        candidates: &Bound<'py, PyAny>,
        k: i64,
        categorical: Option<&Bound<'py, PyAny>>,
        history: Option<&Bound<'py, PyAny>>,
        invalid: &str,
    ) -> PyResult<TopK<'py>> {
        let k = candidate_count(k)?;
        let (_, best) = self.score_one(
            py,
            state,
            candidates,
            categorical,
            history,
            invalid,
            Some(k),
        )?;
        let (indices, scores) = best.unwrap_or_default();
        Ok((int64_result(py, indices), scores.into_pyarray(py)))
    }

    /// Score B requests at once; returns float32 [B, C].
    ///
    /// Runs in the calling thread; `threads` > 1 splits the network's matrix products over a
    /// shared thread pool.
    #[pyo3(signature = (states, candidates, *, categorical=None, history=None, invalid="raise", threads=1))]
    #[allow(clippy::too_many_arguments)]
    fn score_batch<'py>(
        &self,
        py: Python<'py>,
        states: Option<&Bound<'py, PyAny>>,
        candidates: &Bound<'py, PyAny>,
        categorical: Option<&Bound<'py, PyAny>>,
        history: Option<&Bound<'py, PyAny>>,
        invalid: &str,
        threads: usize,
    ) -> PyResult<Bound<'py, numpy::PyArray2<f32>>> {
        let invalid = non_finite_policy(invalid)?;
        let states = self.state(states, true)?;
        let extras = self.extras(categorical, history, true)?;
        let candidates = self.candidates(candidates, true)?;
        let (rows, count) = (candidates.shape()[0], candidates.shape()[1]);
        check_rows(rows, states.as_ref().map(|s| s.shape[0]), "states")?;
        check_rows(
            rows,
            extras.categorical.as_ref().map(|c| c.shape[0]),
            "categorical",
        )?;
        check_rows(rows, extras.history.as_ref().map(|h| h.shape[0]), "history")?;
        let requests = Requests {
            rows,
            states: states.as_ref().map_or(Ok(&[][..]), |s| s.slice("states"))?,
            categorical: extras
                .categorical
                .as_ref()
                .map_or(Ok(&[][..]), |c| c.slice("categorical"))?,
            history: extras
                .history
                .as_ref()
                .map_or(Ok(&[][..]), |h| h.slice("history"))?,
        };
        let view = candidates.view(self.policy.candidate_width())?;
        let policy = &self.policy;
        let scores = run_detached(py, || {
            policy.score_batch(&requests, view, count, invalid, threads.max(1))
        })?;
        let scores = Array2::from_shape_vec((rows, count), scores)
            .map_err(|e| PyValueError::new_err(format!("scores: {e}")))?;
        Ok(scores.into_pyarray(py))
    }

    /// Run the policy's MLP on raw inputs float32 [S] or [B, S]; returns [O] or [B, O].
    ///
    /// One row takes the hand-written kernels, several the GEMM path.
    #[pyo3(signature = (inputs, *, threads=1))]
    fn forward<'py>(
        &self,
        py: Python<'py>,
        inputs: &Bound<'py, PyAny>,
        threads: usize,
    ) -> PyResult<Bound<'py, PyUntypedArray>> {
        let checked = checked_array::<f32>(inputs, "inputs", "float32", &[1, 2], "(S,) or (B, S)")?;
        let rows = if checked.shape.len() == 1 {
            1
        } else {
            checked.shape[0]
        };
        let values = checked.slice("inputs")?;
        let policy = &self.policy;
        let outputs = run_detached(py, || policy.forward(values, rows, threads.max(1)))?;
        if checked.shape.len() == 1 {
            return Ok(outputs.into_pyarray(py).into_any().cast_into()?);
        }
        let width = outputs.len().checked_div(rows).unwrap_or(0);
        let outputs = Array2::from_shape_vec((rows, width), outputs)
            .map_err(|e| PyValueError::new_err(format!("outputs: {e}")))?;
        Ok(outputs.into_pyarray(py).into_any().cast_into()?)
    }

    fn __repr__(&self) -> String {
        format!(
            "Scorer(kind={:?}, state_dim={}, candidate_width={})",
            self.policy.kind(),
            self.policy.state_dim(),
            self.policy.candidate_width()
        )
    }
}

/// Scores [C] of one request, or the indices and scores of its k best candidates.
type ScoredRequest = (Vec<f32>, Option<(Vec<u32>, Vec<f32>)>);

impl Scorer {
    #[allow(clippy::too_many_arguments)]
    fn score_one<'py>(
        &self,
        py: Python<'py>,
        state: Option<&Bound<'py, PyAny>>,
        candidates: &Bound<'py, PyAny>,
        categorical: Option<&Bound<'py, PyAny>>,
        history: Option<&Bound<'py, PyAny>>,
        invalid: &str,
        k: Option<usize>,
    ) -> PyResult<ScoredRequest> {
        let invalid = non_finite_policy(invalid)?;
        let state = self.state(state, false)?;
        let extras = self.extras(categorical, history, false)?;
        let requests = Requests {
            rows: 1,
            states: state.as_ref().map_or(Ok(&[][..]), |s| s.slice("state"))?,
            categorical: extras
                .categorical
                .as_ref()
                .map_or(Ok(&[][..]), |c| c.slice("categorical"))?,
            history: extras
                .history
                .as_ref()
                .map_or(Ok(&[][..]), |h| h.slice("history"))?,
        };
        // An empty candidate array of any dtype is an empty candidate set.
        let empty = is_empty_array(candidates);
        let checked;
        let view = if empty {
            match self.policy.kind() {
                "categorical" => Candidates::Ids(&[]),
                _ => Candidates::Rows {
                    values: &[],
                    width: self.policy.candidate_width(),
                },
            }
        } else {
            checked = self.candidates(candidates, false)?;
            checked.view(self.policy.candidate_width())?
        };
        let policy = &self.policy;
        // Scoring and selection share one release of the GIL.
        run_detached(py, || match k {
            None => Ok((policy.score(&requests, view, invalid)?, None)),
            Some(k) => {
                let best = policy.top_k(&requests, view, k, invalid)?;
                Ok((Vec::new(), Some(best)))
            }
        })
    }
}

fn check_rows(rows: usize, given: Option<usize>, argument: &str) -> PyResult<()> {
    match given {
        Some(given) if given != rows => Err(to_py_err(Error::shape(
            argument,
            format!("{rows} rows, one per request of candidates"),
            format!("{given} rows"),
        ))),
        _ => Ok(()),
    }
}

/// Fuse predictions float32 [C, K] with weights [K] into scores [C].
#[pyfunction]
#[pyo3(signature = (predictions, weights, *, mode="sum", invalid="raise"))]
fn fuse_scores<'py>(
    py: Python<'py>,
    predictions: &Bound<'py, PyAny>,
    weights: &Bound<'py, PyAny>,
    mode: &str,
    invalid: &str,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let mode = FusionMode::from_name(mode).map_err(to_py_err)?;
    let invalid = non_finite_policy(invalid)?;
    let weights = checked_array::<f32>(weights, "weights", "float32", &[1], "(K,)")?;
    let k = weights.shape[0];
    let predictions = checked_array::<f32>(
        predictions,
        "predictions",
        "float32",
        &[2],
        &format!("(C, {k})"),
    )?;
    if predictions.shape[1] != k {
        return Err(to_py_err(Error::shape(
            "predictions",
            format!("shape (C, {k}), one column per weight"),
            format!("shape {}", shape_text(&predictions.shape)),
        )));
    }
    let values = predictions.slice("predictions")?;
    let weight_values = weights.slice("weights")?;
    let scores = run_detached(py, || scoring::fuse(values, weight_values, mode, invalid))?;
    Ok(scores.into_pyarray(py))
}

/// Return (indices int64 [k'], scores float32 [k']) of the `k' = min(k, C)` best scores.
#[pyfunction]
fn select_top_k<'py>(py: Python<'py>, scores: &Bound<'py, PyAny>, k: i64) -> PyResult<TopK<'py>> {
    let k = candidate_count(k)?;
    let scores = checked_array::<f32>(scores, "scores", "float32", &[1], "(C,)")?;
    let values = scores.slice("scores")?;
    let indices = run_detached(py, || scoring::top_k(values, k))?;
    let best: Vec<f32> = indices.iter().map(|&i| values[i as usize]).collect();
    Ok((int64_result(py, indices), best.into_pyarray(py)))
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Scorer>()?;
    module.add_function(wrap_pyfunction!(fuse_scores, module)?)?;
    module.add_function(wrap_pyfunction!(select_top_k, module)?)?;
    Ok(())
}
