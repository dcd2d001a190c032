//! Bindings of `recrl_core::csv_reader`.

use std::path::PathBuf;

use numpy::IntoPyArray;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use recrl_core::csv_reader::{self, ColumnData, ColumnKind, ColumnSpec, CsvOptions};

use crate::errors::run_detached;

fn parse_kind(name: &str, kind: &str) -> PyResult<ColumnKind> {
    match kind {
        "int64" => Ok(ColumnKind::Int64),
        "float32" => Ok(ColumnKind::Float32),
        "float64" => Ok(ColumnKind::Float64),
        "category" => Ok(ColumnKind::Category),
        other => Err(PyValueError::new_err(format!(
            "columns[{name:?}]: expected one of 'int64', 'float32', 'float64', 'category', got {other:?}"
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
    let delimiter = match delimiter.as_bytes() {
        [byte] => *byte,
        _ => {
            return Err(PyValueError::new_err(format!(
                "delimiter: expected a single one-byte character, got {delimiter:?}"
            )))
        }
    };
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
    };
    let data = run_detached(py, || csv_reader::read_csv(&path, &options, &specs))?;

    let result = PyDict::new(py);
    for (spec, column) in specs.iter().zip(data) {
        match column {
            ColumnData::Int64(values) => result.set_item(&spec.name, values.into_pyarray(py))?,
            ColumnData::Float32(values) => result.set_item(&spec.name, values.into_pyarray(py))?,
            ColumnData::Float64(values) => result.set_item(&spec.name, values.into_pyarray(py))?,
            ColumnData::Category { codes, labels } => {
                result.set_item(&spec.name, (codes.into_pyarray(py), labels))?
            }
        }
    }
    Ok(result)
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(read_csv, module)?)?;
    Ok(())
}
