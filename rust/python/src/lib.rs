//! PyO3 bindings of `recrl-core`, imported as `recrl._core`.
//!
//! Each function extracts and validates its arguments while attached to the interpreter, runs
//! the core kernel with the GIL released, and returns NumPy arrays that own the kernel's output
//! buffers (no copy).

mod errors;
mod io;
mod metrics;
mod partition;
mod replay;
mod returns;
mod scoring;
mod trajectory;

use pyo3::prelude::*;

#[pymodule]
fn _core(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    trajectory::register(module)?;
    io::register(module)?;
    returns::register(module)?;
    replay::register(module)?;
    metrics::register(module)?;
    scoring::register(module)?;
    partition::register(module)?;
    Ok(())
}
