//! Conversion of core errors into the exception classes of `recrl.errors`.
//!
//! The classes are defined in Python, so that they can subclass both `recrl.errors.RecrlError`
//! and the built-in `ValueError` or `OSError`. They are looked up once and cached.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use recrl_core::Error;

static ERRORS_MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn error_class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyType>> {
    let module =
        ERRORS_MODULE.get_or_try_init(py, || py.import("recrl.errors").map(Bound::unbind))?;
    Ok(module.bind(py).getattr(name)?.cast_into::<PyType>()?)
}

/// Turn a core error into the matching `recrl.errors` exception.
pub fn to_py_err(error: Error) -> PyErr {
    let class_name = match &error {
        Error::Shape { .. } => "ShapeError",
        Error::InvalidArgument { .. } => "InvalidArgumentError",
        Error::InvalidValue { .. } => "InvalidDataError",
        Error::Parse { .. } => "DataFormatError",
        Error::ColumnNotFound { .. } => "ColumnNotFoundError",
        Error::Io { .. } => "RecrlIOError",
    };
    let message = error.to_string();
    Python::attach(|py| match error_class(py, class_name) {
        Ok(class) => PyErr::from_type(class, message),
        Err(lookup_error) => PyRuntimeError::new_err(format!(
            "{message} (recrl.errors.{class_name} could not be loaded: {lookup_error})"
        )),
    })
}

/// Run `work` with the GIL released, then check for Ctrl-C and convert any core error.
pub fn run_detached<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> recrl_core::Result<T> + Send,
{
    let result = py.detach(work);
    py.check_signals()?;
    result.map_err(to_py_err)
}
