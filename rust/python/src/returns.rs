//! Bindings of `recrl_core::returns`.
//!
//! Arrays of one response may be (N,) or (N, 1). Results are (N,) when `gammas` is a single
//! float and there is one response, and (N, K) otherwise.

use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{
    IntoPyArray, PyArrayDyn, PyArrayMethods, PyReadonlyArray1, PyReadonlyArrayDyn,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use recrl_core::returns::{self, EpisodeLayout};
use recrl_core::Error;

use crate::errors::{run_detached, to_py_err};

type Floats<'py> = PyReadonlyArrayDyn<'py, f32>;
type FloatArray<'py> = Bound<'py, PyArrayDyn<f32>>;

/// Row and response counts shared by every array of a call, and the rank of the results.
struct ResponseShape {
    rows: usize,
    width: usize,
    one_dimensional: bool,
}

impl ResponseShape {
    /// Check that `array` is [rows, width], or [rows] when width is 1, and return its data.
    fn check<'a>(&self, argument: &str, array: &'a Floats<'_>, rows: usize) -> PyResult<&'a [f32]> {
        let shape = array.shape();
        let fits = match shape {
            [r] => *r == rows && self.width == 1,
            [r, k] => *r == rows && *k == self.width,
            _ => false,
        };
        if !fits {
            let expected = if self.width == 1 {
                format!("shape ({rows},) or ({rows}, 1)")
            } else {
                format!("shape ({rows}, {})", self.width)
            };
            return Err(to_py_err(Error::shape(argument, expected, describe(shape))));
        }
        Ok(array.as_slice()?)
    }

    /// Return the dimensions of a result with `rows` rows.
    fn dims(&self, rows: usize) -> Vec<usize> {
        if self.one_dimensional {
            vec![rows]
        } else {
            vec![rows, self.width]
        }
    }

    fn output<'py>(
        &self,
        py: Python<'py>,
        data: Vec<f32>,
        rows: usize,
    ) -> PyResult<FloatArray<'py>> {
        let dims = self.dims(rows);
        let array = ArrayD::from_shape_vec(IxDyn(&dims), data)
            .map_err(|e| PyValueError::new_err(format!("returns output: {e}")))?;
        Ok(array.into_pyarray(py))
    }
}

fn describe(shape: &[usize]) -> String {
    match shape {
        [n] => format!("shape ({n},)"),
        _ => format!(
            "shape ({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Read `gammas` (a float or a float64 array [K]) against `rewards` and fix K and the result rank.
fn resolve_shape(
    rewards: &Floats<'_>,
    gammas: &Bound<'_, PyAny>,
) -> PyResult<(ResponseShape, Vec<f64>)> {
    let shape = rewards.shape();
    let rows = match shape {
        [n] | [n, _] => *n,
        _ => {
            return Err(to_py_err(Error::shape(
                "rewards",
                "shape (n,) or (n, k)",
                describe(shape),
            )))
        }
    };

    if let Ok(gamma) = gammas.extract::<f64>() {
        let width = if let [_, k] = shape { *k } else { 1 };
        if width == 0 {
            return Err(to_py_err(Error::shape(
                "rewards",
                format!("at least one response column, shape ({rows}, k) with k >= 1"),
                describe(shape),
            )));
        }
        let response_shape = ResponseShape {
            rows,
            width,
            one_dimensional: width == 1,
        };
        return Ok((response_shape, vec![gamma; width]));
    }

    let gammas: PyReadonlyArray1<'_, f64> = gammas.extract().map_err(|_| {
        to_py_err(Error::invalid(
            "gammas",
            format!(
                "expected a float or a 1-D float64 array, got {}",
                gammas
                    .get_type()
                    .name()
                    .map_or_else(|_| "?".into(), |name| name.to_string())
            ),
        ))
    })?;
    let gammas = gammas.as_slice()?.to_vec();
    let width = gammas.len();
    let fits = match shape {
        [_] => width == 1,
        [_, k] => *k == width,
        _ => false,
    };
    if !fits {
        return Err(to_py_err(Error::shape(
            "rewards",
            format!("shape ({rows}, {width}), one column per entry of gammas"),
            describe(shape),
        )));
    }
    Ok((
        ResponseShape {
            rows,
            width,
            one_dimensional: false,
        },
        gammas,
    ))
}

fn build_layout(
    rows: usize,
    episode_starts: Option<&PyReadonlyArray1<'_, i64>>,
    terminals: Option<&PyReadonlyArray1<'_, u8>>,
    truncations: Option<&PyReadonlyArray1<'_, u8>>,
) -> PyResult<EpisodeLayout> {
    let starts = episode_starts.map(|a| a.as_slice()).transpose()?;
    let terminals = terminals.map(|a| a.as_slice()).transpose()?;
    let truncations = truncations.map(|a| a.as_slice()).transpose()?;
    EpisodeLayout::new(rows, starts, terminals, truncations).map_err(to_py_err)
}

/// Discounted reward-to-go of every row; see `recrl.returns.discounted_returns`.
#[pyfunction]
#[pyo3(signature = (rewards, gammas, *, episode_starts=None, terminals=None, truncations=None, bootstrap_values=None, out=None))]
#[allow(clippy::too_many_arguments)]
fn discounted_returns<'py>(
    py: Python<'py>,
    rewards: Floats<'py>,
    gammas: &Bound<'py, PyAny>,
    episode_starts: Option<PyReadonlyArray1<'py, i64>>,
    terminals: Option<PyReadonlyArray1<'py, u8>>,
    truncations: Option<PyReadonlyArray1<'py, u8>>,
    bootstrap_values: Option<Floats<'py>>,
    out: Option<Bound<'py, PyArrayDyn<f32>>>,
) -> PyResult<FloatArray<'py>> {
    let (shape, gammas) = resolve_shape(&rewards, gammas)?;
    let layout = build_layout(
        shape.rows,
        episode_starts.as_ref(),
        terminals.as_ref(),
        truncations.as_ref(),
    )?;
    let rewards = shape.check("rewards", &rewards, shape.rows)?;
    let bootstrap = bootstrap_values
        .as_ref()
        .map(|values| shape.check("bootstrap_values", values, layout.episode_count()))
        .transpose()?;
    let Some(out) = out else {
        let result = run_detached(py, || {
            returns::discounted_returns(&layout, rewards, &gammas, bootstrap)
        })?;
        return shape.output(py, result, layout.rows());
    };
    let expected = shape.dims(layout.rows());
    if out.shape() != expected.as_slice() {
        return Err(to_py_err(Error::shape(
            "out",
            describe(&expected),
            describe(out.shape()),
        )));
    }
    {
        // The borrow fails when `out` overlaps an input, which rust-numpy tracks.
        let mut writable = out.try_readwrite().map_err(|_| {
            to_py_err(Error::invalid(
                "out",
                "expected a writeable array that shares no memory with the inputs",
            ))
        })?;
        let buffer = writable.as_slice_mut().map_err(|_| {
            to_py_err(Error::invalid(
                "out",
                "expected a C-contiguous float32 array",
            ))
        })?;
        run_detached(py, || {
            returns::discounted_returns_into(&layout, rewards, &gammas, bootstrap, buffer)
        })?;
    }
    Ok(out)
}

/// n-step targets of every row; see `recrl.returns.n_step_targets`.
#[pyfunction]
#[pyo3(signature = (rewards, next_values, gammas, n, *, episode_starts=None, terminals=None, truncations=None))]
#[allow(clippy::too_many_arguments)]
fn n_step_targets<'py>(
    py: Python<'py>,
    rewards: Floats<'py>,
    next_values: Floats<'py>,
    gammas: &Bound<'py, PyAny>,
    n: i64,
    episode_starts: Option<PyReadonlyArray1<'py, i64>>,
    terminals: Option<PyReadonlyArray1<'py, u8>>,
    truncations: Option<PyReadonlyArray1<'py, u8>>,
) -> PyResult<FloatArray<'py>> {
    let n = usize::try_from(n)
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| to_py_err(Error::invalid("n", format!("must be at least 1, got {n}"))))?;
    let (shape, gammas) = resolve_shape(&rewards, gammas)?;
    let layout = build_layout(
        shape.rows,
        episode_starts.as_ref(),
        terminals.as_ref(),
        truncations.as_ref(),
    )?;
    let rewards = shape.check("rewards", &rewards, shape.rows)?;
    let next_values = shape.check("next_values", &next_values, shape.rows)?;
    let result = run_detached(py, || {
        returns::n_step_targets(&layout, rewards, next_values, &gammas, n)
    })?;
    shape.output(py, result, layout.rows())
}

/// TD(lambda) returns of every row; see `recrl.returns.lambda_returns`.
#[pyfunction]
#[pyo3(signature = (rewards, next_values, gammas, lambda_, *, episode_starts=None, terminals=None, truncations=None))]
#[allow(clippy::too_many_arguments)]
fn lambda_returns<'py>(
    py: Python<'py>,
    rewards: Floats<'py>,
    next_values: Floats<'py>,
    gammas: &Bound<'py, PyAny>,
    lambda_: f64,
    episode_starts: Option<PyReadonlyArray1<'py, i64>>,
    terminals: Option<PyReadonlyArray1<'py, u8>>,
    truncations: Option<PyReadonlyArray1<'py, u8>>,
) -> PyResult<FloatArray<'py>> {
    let (shape, gammas) = resolve_shape(&rewards, gammas)?;
    let layout = build_layout(
        shape.rows,
        episode_starts.as_ref(),
        terminals.as_ref(),
        truncations.as_ref(),
    )?;
    let rewards = shape.check("rewards", &rewards, shape.rows)?;
    let next_values = shape.check("next_values", &next_values, shape.rows)?;
    let result = run_detached(py, || {
        returns::lambda_returns(&layout, rewards, next_values, &gammas, lambda_)
    })?;
    shape.output(py, result, layout.rows())
}

/// GAE advantages and value targets of every row; see `recrl.returns.gae`.
#[pyfunction]
#[pyo3(signature = (rewards, values, next_values, gammas, lambda_, *, episode_starts=None, terminals=None, truncations=None))]
#[allow(clippy::too_many_arguments)]
fn gae<'py>(
    py: Python<'py>,
    rewards: Floats<'py>,
    values: Floats<'py>,
    next_values: Floats<'py>,
    gammas: &Bound<'py, PyAny>,
    lambda_: f64,
    episode_starts: Option<PyReadonlyArray1<'py, i64>>,
    terminals: Option<PyReadonlyArray1<'py, u8>>,
    truncations: Option<PyReadonlyArray1<'py, u8>>,
) -> PyResult<(FloatArray<'py>, FloatArray<'py>)> {
    let (shape, gammas) = resolve_shape(&rewards, gammas)?;
    let layout = build_layout(
        shape.rows,
        episode_starts.as_ref(),
        terminals.as_ref(),
        truncations.as_ref(),
    )?;
    let rewards = shape.check("rewards", &rewards, shape.rows)?;
    let values = shape.check("values", &values, shape.rows)?;
    let next_values = shape.check("next_values", &next_values, shape.rows)?;
    let (advantages, targets) = run_detached(py, || {
        returns::gae(&layout, rewards, values, next_values, &gammas, lambda_)
    })?;
    Ok((
        shape.output(py, advantages, layout.rows())?,
        shape.output(py, targets, layout.rows())?,
    ))
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(discounted_returns, module)?)?;
    module.add_function(wrap_pyfunction!(n_step_targets, module)?)?;
    module.add_function(wrap_pyfunction!(lambda_returns, module)?)?;
    module.add_function(wrap_pyfunction!(gae, module)?)?;
    Ok(())
}
