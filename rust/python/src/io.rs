//! Bindings of `recrl_core::csv_reader`.

use std::path::PathBuf;

use numpy::{IntoPyArray, PyReadonlyArray1};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use recrl_core::csv_reader::{self, ColumnData, ColumnKind, ColumnSpec, CsvOptions};
use recrl_core::csv_writer::{self, ColumnValues};
use recrl_core::kuairand;

use crate::errors::run_detached;

fn parse_kind(name: &str, kind: &str) -> PyResult<ColumnKind> {
    match kind {
        "int64" => Ok(ColumnKind::Int64),
        "uint8" => Ok(ColumnKind::UInt8),
        "float32" => Ok(ColumnKind::Float32),
        "float64" => Ok(ColumnKind::Float64),
        "category" => Ok(ColumnKind::Category),
        other => Err(PyValueError::new_err(format!(
            "columns[{name:?}]: expected one of 'int64', 'uint8', 'float32', 'float64', 'category', got {other:?}"
        ))),
    }
}

/// Read the named columns of a delimited file.
///
/// Returns a dict: column name -> ndarray, and for category columns name -> (codes, labels).
#[pyfunction]
#[pyo3(signature = (path, columns, *, delimiter=",", headerless_names=None))]
fn read_csv<'py>(
    py: Python<'py>,
    path: PathBuf,
    columns: Vec<(String, String)>,
    delimiter: &str,
    headerless_names: Option<Vec<String>>,
) -> PyResult<Bound<'py, PyDict>> {
    let delimiter = single_byte(delimiter)?;
    let specs = columns
        .iter()
        .map(|(name, kind)| {
            Ok(ColumnSpec {
                name: name.clone(),
                kind: parse_kind(name, kind)?,
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    let options = CsvOptions {
        delimiter,
        headerless_names,
        block_bytes: csv_reader::BLOCK_BYTES,
    };
    let data = run_detached(py, || csv_reader::read_csv(&path, &options, &specs))?;

    let result = PyDict::new(py);
    for (spec, column) in specs.iter().zip(data) {
        match column {
            ColumnData::Int64(values) => result.set_item(&spec.name, values.into_pyarray(py))?,
            ColumnData::UInt8(values) => result.set_item(&spec.name, values.into_pyarray(py))?,
            ColumnData::Float32(values) => result.set_item(&spec.name, values.into_pyarray(py))?,
            ColumnData::Float64(values) => result.set_item(&spec.name, values.into_pyarray(py))?,
            ColumnData::Category { codes, labels } => {
                result.set_item(&spec.name, (codes.into_pyarray(py), labels))?
            }
        }
    }
    Ok(result)
}

/// Write int64 and float64 columns as a delimited file with a header, atomically.
#[pyfunction]
#[pyo3(signature = (path, columns, *, delimiter=","))]
fn write_csv<'py>(
    py: Python<'py>,
    path: PathBuf,
    columns: Vec<(String, Bound<'py, PyAny>)>,
    delimiter: &str,
) -> PyResult<()> {
    let delimiter = single_byte(delimiter)?;
    enum Owned<'py> {
        Int64(PyReadonlyArray1<'py, i64>),
        Float64(PyReadonlyArray1<'py, f64>),
    }
    let mut owned = Vec::with_capacity(columns.len());
    for (name, array) in &columns {
        if let Ok(values) = array.extract::<PyReadonlyArray1<'py, i64>>() {
            owned.push((name.clone(), Owned::Int64(values)));
        } else if let Ok(values) = array.extract::<PyReadonlyArray1<'py, f64>>() {
            owned.push((name.clone(), Owned::Float64(values)));
        } else {
            return Err(PyTypeError::new_err(format!(
                "columns[{name:?}]: expected a one-dimensional int64 or float64 array"
            )));
        }
    }
    let mut borrowed = Vec::with_capacity(owned.len());
    for (name, values) in &owned {
        let values = match values {
            Owned::Int64(values) => ColumnValues::Int64(values.as_slice()?),
            Owned::Float64(values) => ColumnValues::Float64(values.as_slice()?),
        };
        borrowed.push((name.clone(), values));
    }
    run_detached(py, || csv_writer::write_csv(&path, delimiter, &borrowed))
}

/// Derive KuaiRand watch time (s), watch ratio and zero-duration flags from play and video
/// durations.
///
/// Returns a dict with `watch_time` and `watch_ratio` (float32), `duration_zero` (uint8), and
/// the counts `negative_play_rows` and `zero_duration_rows`.
#[pyfunction]
fn kuairand_watch_responses<'py>(
    py: Python<'py>,
    play_ms: PyReadonlyArray1<'py, i64>,
    duration_ms: PyReadonlyArray1<'py, i64>,
) -> PyResult<Bound<'py, PyDict>> {
    let play = play_ms.as_slice()?;
    let duration = duration_ms.as_slice()?;
    let responses = run_detached(py, || kuairand::watch_responses(play, duration))?;
    let result = PyDict::new(py);
    result.set_item("watch_time", responses.watch_time.into_pyarray(py))?;
    result.set_item("watch_ratio", responses.watch_ratio.into_pyarray(py))?;
    result.set_item("duration_zero", responses.duration_zero.into_pyarray(py))?;
    result.set_item("negative_play_rows", responses.negative_play_rows)?;
    result.set_item("zero_duration_rows", responses.zero_duration_rows)?;
    Ok(result)
}

fn single_byte(delimiter: &str) -> PyResult<u8> {
    match delimiter.as_bytes() {
        [byte] => Ok(*byte),
        _ => Err(PyValueError::new_err(format!(
            "delimiter: expected a single one-byte character, got {delimiter:?}"
        ))),
    }
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(read_csv, module)?)?;
    module.add_function(wrap_pyfunction!(write_csv, module)?)?;
    module.add_function(wrap_pyfunction!(kuairand_watch_responses, module)?)?;
    Ok(())
}
