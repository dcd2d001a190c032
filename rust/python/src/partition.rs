//! Bindings of `recrl_core::partition`.

use std::path::PathBuf;

use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use recrl_core::partition::{self, PartitionOptions};

use crate::errors::run_detached;

/// Return the shard of each user id, int64 in `0..shards`.
#[pyfunction]
fn shard_of_users<'py>(
    py: Python<'py>,
    users: PyReadonlyArray1<'py, i64>,
    shards: usize,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let users = users.as_slice()?;
    let result = run_detached(py, || partition::shard_of_users(users, shards))?;
    Ok(result.into_pyarray(py))
}

/// Split delimited files into shard files by a hash of the user id; returns per-shard counts.
#[pyfunction]
#[pyo3(signature = (inputs, folder, *, user_column, shards, extension="csv", delimiter=",", headerless_names=None))]
#[allow(clippy::too_many_arguments)]
fn partition_csv<'py>(
    py: Python<'py>,
    inputs: Vec<PathBuf>,
    folder: PathBuf,
    user_column: String,
    shards: usize,
    extension: &str,
    delimiter: &str,
    headerless_names: Option<Vec<String>>,
) -> PyResult<Bound<'py, PyDict>> {
    let delimiter = match delimiter.as_bytes() {
        [byte] => *byte,
        _ => {
            return Err(PyValueError::new_err(format!(
                "delimiter: expected a single one-byte character, got {delimiter:?}"
            )))
        }
    };
    let options = PartitionOptions {
        delimiter,
        headerless_names,
        user_column,
        shards,
    };
    let summary = run_detached(py, || {
        partition::partition_csv(&inputs, &folder, extension, &options)
    })?;
    let result = PyDict::new(py);
    let to_i64 = |values: Vec<u64>| values.into_iter().map(|v| v as i64).collect::<Vec<i64>>();
    result.set_item("rows", to_i64(summary.rows).into_pyarray(py))?;
    result.set_item("users", to_i64(summary.users).into_pyarray(py))?;
    Ok(result)
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("MAX_SHARDS", partition::MAX_SHARDS)?;
    module.add_function(wrap_pyfunction!(shard_of_users, module)?)?;
    module.add_function(wrap_pyfunction!(partition_csv, module)?)?;
    Ok(())
}
