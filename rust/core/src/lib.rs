//! Pure-Rust kernels of recrl. Nothing here depends on Python: the `recrl-python` crate wraps
//! these functions for `recrl._core`, and `cargo test` runs without an interpreter.

pub mod csv_reader;
pub mod csv_writer;
pub mod error;
pub mod kuairand;
mod memory;
pub mod metrics;
pub mod partition;
pub mod replay;
pub mod returns;

pub mod scoring;
pub mod trajectory;

pub use error::{Error, Result};
