//! Bindings of `recrl_core::trajectory`.

use numpy::ndarray::Array2;
use numpy::{Element, IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use recrl_core::trajectory::{self, EpisodeOptions, Episodes};

use crate::errors::{run_detached, to_py_err};

/// Return the permutation sorting rows by (user, time), ties kept in row order.
#[pyfunction]
fn stable_order<'py>(
    py: Python<'py>,
    users: PyReadonlyArray1<'py, i64>,
    times: PyReadonlyArray1<'py, i64>,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let users = users.as_slice()?;
    let times = times.as_slice()?;
    let order = run_detached(py, || trajectory::stable_order(users, times))?;
    Ok(order.into_pyarray(py))
}

/// Cut rows sorted by (user, time) into episodes; returns a dict of arrays.
#[pyfunction]
#[pyo3(signature = (users, times, *, segments=None, episode_ends=None, session_gap_ms=None, window_end_ms=None, active_within_ms=0))]
#[allow(clippy::too_many_arguments)]
fn build_episodes<'py>(
    py: Python<'py>,
    users: PyReadonlyArray1<'py, i64>,
    times: PyReadonlyArray1<'py, i64>,
    segments: Option<PyReadonlyArray1<'py, u8>>,
    episode_ends: Option<PyReadonlyArray1<'py, u8>>,
    session_gap_ms: Option<i64>,
    window_end_ms: Option<i64>,
    active_within_ms: i64,
) -> PyResult<Bound<'py, PyDict>> {
    let users = users.as_slice()?;
    let times = times.as_slice()?;
    let segments = segments.as_ref().map(|a| a.as_slice()).transpose()?;
    let episode_ends = episode_ends.as_ref().map(|a| a.as_slice()).transpose()?;
    let options = EpisodeOptions {
        session_gap_ms,
        window_end_ms,
        active_within_ms,
    };
    let episodes = run_detached(py, || {
        trajectory::build_episodes(users, times, segments, episode_ends, &options)
    })?;

    let result = PyDict::new(py);
    set_episode_items(&result, episodes)?;
    Ok(result)
}

/// Sort rows by (user, time, row) and cut them into episodes; returns a dict of arrays.
#[pyfunction]
#[pyo3(signature = (users, times, *, segments=None, episode_ends=None, session_gap_ms=None, window_end_ms=None, active_within_ms=0, placement=false))]
#[allow(clippy::too_many_arguments)]
fn sort_episodes<'py>(
    py: Python<'py>,
    users: PyReadonlyArray1<'py, i64>,
    times: PyReadonlyArray1<'py, i64>,
    segments: Option<PyReadonlyArray1<'py, u8>>,
    episode_ends: Option<PyReadonlyArray1<'py, u8>>,
    session_gap_ms: Option<i64>,
    window_end_ms: Option<i64>,
    active_within_ms: i64,
    placement: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let users = users.as_slice()?;
    let times = times.as_slice()?;
    let segments = segments.as_ref().map(|a| a.as_slice()).transpose()?;
    let episode_ends = episode_ends.as_ref().map(|a| a.as_slice()).transpose()?;
    let options = EpisodeOptions {
        session_gap_ms,
        window_end_ms,
        active_within_ms,
    };
    let sorted = run_detached(py, || {
        trajectory::sort_episodes(users, times, segments, episode_ends, &options, placement)
    })?;

    let result = PyDict::new(py);
    result.set_item("order", sorted.order.into_pyarray(py))?;
    result.set_item("users", sorted.users.into_pyarray(py))?;
    result.set_item("times", sorted.times.into_pyarray(py))?;
    if let Some(segments) = sorted.segments {
        result.set_item("segments", segments.into_pyarray(py))?;
    }
    set_episode_items(&result, sorted.episodes)?;
    if let Some(inner) = sorted.placement {
        result.set_item("placement", PyPlacement { inner })?;
    }
    Ok(result)
}

/// Put the four arrays of `episodes` into `result` under their field names.
fn set_episode_items(result: &Bound<'_, PyDict>, episodes: Episodes) -> PyResult<()> {
    let py = result.py();
    result.set_item("episode_starts", episodes.episode_starts.into_pyarray(py))?;
    result.set_item("terminals", episodes.terminals.into_pyarray(py))?;
    result.set_item("truncations", episodes.truncations.into_pyarray(py))?;
    result.set_item("next_index", episodes.next_index.into_pyarray(py))?;
    Ok(())
}

/// Items of the `length` previous rows of the same user for each row, most recent first.
#[pyfunction]
fn history_windows<'py>(
    py: Python<'py>,
    users: PyReadonlyArray1<'py, i64>,
    items: PyReadonlyArray1<'py, i64>,
    length: usize,
) -> PyResult<Bound<'py, PyArray2<i64>>> {
    let n = users.len()?;
    let users = users.as_slice()?;
    let items = items.as_slice()?;
    let windows = run_detached(py, || trajectory::history_windows(users, items, length))?;
    let windows = Array2::from_shape_vec((n, length), windows)
        .map_err(|e| PyValueError::new_err(format!("history windows: {e}")))?;
    Ok(windows.into_pyarray(py))
}

/// Two int64 arrays returned together.
type Int64Pair<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>);

/// Dense codes 1..=V over the sorted distinct values of `vocabulary_source`, 0 for unknown.
#[pyfunction]
fn encode_ids<'py>(
    py: Python<'py>,
    vocabulary_source: PyReadonlyArray1<'py, i64>,
    values: PyReadonlyArray1<'py, i64>,
) -> PyResult<Int64Pair<'py>> {
    let source = vocabulary_source.as_slice()?;
    let values = values.as_slice()?;
    let (codes, vocabulary) = py.detach(|| trajectory::encode_ids(source, values));
    Ok((codes.into_pyarray(py), vocabulary.into_pyarray(py)))
}

/// Gather `values[order]` in parallel for an int64 array.
#[pyfunction]
fn take_int64<'py>(
    py: Python<'py>,
    values: PyReadonlyArray1<'py, i64>,
    order: PyReadonlyArray1<'py, i64>,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let values = values.as_slice()?;
    let order = order.as_slice()?;
    let taken = run_detached(py, || trajectory::take(values, order))?;
    Ok(taken.into_pyarray(py))
}

// Gather rows `order` of K columns into a [N, K] array, in parallel.
fn take_matrix<'py, T: Element + Copy + Send + Sync>(
    py: Python<'py>,
    columns: &[PyReadonlyArray1<'py, T>],
    order: PyReadonlyArray1<'py, i64>,
) -> PyResult<Bound<'py, PyArray2<T>>> {
    let slices = columns
        .iter()
        .map(|column| column.as_slice())
        .collect::<Result<Vec<_>, _>>()?;
    let order = order.as_slice()?;
    let matrix = run_detached(py, || trajectory::take_columns(&slices, order))?;
    into_matrix(py, order.len(), slices.len(), matrix)
}

// Shape `values` (row-major) into a [rows, width] NumPy array.
fn into_matrix<T: Element>(
    py: Python<'_>,
    rows: usize,
    width: usize,
    values: Vec<T>,
) -> PyResult<Bound<'_, PyArray2<T>>> {
    let matrix = Array2::from_shape_vec((rows, width), values)
        .map_err(|e| PyValueError::new_err(format!("reordered columns: {e}")))?;
    Ok(matrix.into_pyarray(py))
}

/// Gather rows `order` of K float32 columns into a [N, K] array, in parallel.
#[pyfunction]
fn take_columns_float32<'py>(
    py: Python<'py>,
    columns: Vec<PyReadonlyArray1<'py, f32>>,
    order: PyReadonlyArray1<'py, i64>,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    take_matrix(py, &columns, order)
}

/// Gather rows `order` of K int64 columns into a [N, K] array, in parallel.
#[pyfunction]
fn take_columns_int64<'py>(
    py: Python<'py>,
    columns: Vec<PyReadonlyArray1<'py, i64>>,
    order: PyReadonlyArray1<'py, i64>,
) -> PyResult<Bound<'py, PyArray2<i64>>> {
    take_matrix(py, &columns, order)
}

/// The inverse of a permutation of rows, for reordering many columns by it.
#[pyclass(name = "Placement", module = "recrl._core", frozen)]
struct PyPlacement {
    inner: trajectory::Placement,
}

impl PyPlacement {
    fn place<'py, T: Element + Copy + Send + Sync>(
        &self,
        py: Python<'py>,
        columns: &[PyReadonlyArray1<'py, T>],
    ) -> PyResult<Bound<'py, PyArray2<T>>> {
        let slices = columns
            .iter()
            .map(|column| column.as_slice())
            .collect::<Result<Vec<_>, _>>()?;
        let matrix = run_detached(py, || self.inner.place_columns(&slices))?;
        into_matrix(py, self.inner.len(), slices.len(), matrix)
    }
}

#[pymethods]
impl PyPlacement {
    #[new]
    fn new(py: Python<'_>, order: PyReadonlyArray1<'_, i64>) -> PyResult<Self> {
        let order = order.as_slice()?;
        let inner = run_detached(py, || trajectory::Placement::new(order))?;
        Ok(PyPlacement { inner })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn take_columns_float32<'py>(
        &self,
        py: Python<'py>,
        columns: Vec<PyReadonlyArray1<'py, f32>>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        self.place(py, &columns)
    }

    fn take_columns_int64<'py>(
        &self,
        py: Python<'py>,
        columns: Vec<PyReadonlyArray1<'py, i64>>,
    ) -> PyResult<Bound<'py, PyArray2<i64>>> {
        self.place(py, &columns)
    }
}

/// Counts of each code where the mask is set, and over all rows.
type CodeCounts<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>);

/// Count each code 0..=size over all rows and over the rows where `mask` is set.
#[pyfunction]
fn count_codes<'py>(
    py: Python<'py>,
    codes: PyReadonlyArray1<'py, i64>,
    mask: PyReadonlyArray1<'py, bool>,
    size: usize,
) -> PyResult<CodeCounts<'py>> {
    let codes = codes.as_slice()?;
    let mask = mask.as_slice()?;
    let (masked, all) = run_detached(py, || trajectory::count_codes(codes, mask, size))?;
    Ok((masked.into_pyarray(py), all.into_pyarray(py)))
}

/// Match log rows to side-table rows, numbering the table rows in use.
#[pyfunction]
#[pyo3(signature = (table_ids, entity_ids, train, train_counts=None, all_counts=None))]
fn side_rows<'py>(
    py: Python<'py>,
    table_ids: PyReadonlyArray1<'py, i64>,
    entity_ids: PyReadonlyArray1<'py, i64>,
    train: PyReadonlyArray1<'py, bool>,
    train_counts: Option<PyReadonlyArray1<'py, i64>>,
    all_counts: Option<PyReadonlyArray1<'py, i64>>,
) -> PyResult<Bound<'py, PyDict>> {
    let table_ids = table_ids.as_slice()?;
    let entity_ids = entity_ids.as_slice()?;
    let train = train.as_slice()?;
    let shared = match (&train_counts, &all_counts) {
        (Some(train_counts), Some(all_counts)) => {
            Some((train_counts.as_slice()?, all_counts.as_slice()?))
        }
        (None, None) => None,
        _ => {
            return Err(to_py_err(recrl_core::Error::invalid(
                "train_counts",
                "give train_counts and all_counts together, or neither",
            )))
        }
    };
    let side = run_detached(py, || {
        trajectory::side_rows(table_ids, entity_ids, train, shared)
    })?;
    let result = PyDict::new(py);
    result.set_item("rows", side.rows.into_pyarray(py))?;
    result.set_item("used", side.used.into_pyarray(py))?;
    result.set_item("train_counts", side.train_counts.into_pyarray(py))?;
    result.set_item("all_counts", side.all_counts.into_pyarray(py))?;
    result.set_item("matched", side.matched)?;
    Ok(result)
}

/// Count the distinct values of an int64 array.
#[pyfunction]
fn count_distinct<'py>(py: Python<'py>, values: PyReadonlyArray1<'py, i64>) -> PyResult<usize> {
    let values = values.as_slice()?;
    Ok(py.detach(|| trajectory::count_distinct(values)))
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(stable_order, module)?)?;
    module.add_function(wrap_pyfunction!(build_episodes, module)?)?;
    module.add_function(wrap_pyfunction!(sort_episodes, module)?)?;
    module.add_function(wrap_pyfunction!(history_windows, module)?)?;
    module.add_function(wrap_pyfunction!(encode_ids, module)?)?;
    module.add_function(wrap_pyfunction!(side_rows, module)?)?;
    module.add_function(wrap_pyfunction!(take_int64, module)?)?;
    module.add_function(wrap_pyfunction!(take_columns_float32, module)?)?;
    module.add_function(wrap_pyfunction!(take_columns_int64, module)?)?;
    module.add_class::<PyPlacement>()?;
    module.add_function(wrap_pyfunction!(count_codes, module)?)?;
    module.add_function(wrap_pyfunction!(count_distinct, module)?)?;
    Ok(())
}
