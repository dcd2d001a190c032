//! The one error type of the core. The Python bindings map each variant onto a class of
//! `recrl.errors`, so every message names the argument (or file, line and column), what was
//! expected and what was received.

use std::path::PathBuf;

/// Result alias used by every kernel of the core.
pub type Result<T> = std::result::Result<T, Error>;

/// An invalid input or a failed read, with enough context to find and fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An array whose length or shape does not match the others.
    #[error("{argument}: expected {expected}, got {received}")]
    Shape {
        argument: String,
        expected: String,
        received: String,
    },

    /// An argument whose value is outside its domain.
    #[error("{argument}: {message}")]
    InvalidArgument { argument: String, message: String },

    /// A value inside the data (not an argument) that cannot be used, such as NaN in a feature.
    #[error("column {column}, row {row}: {message}")]
    InvalidValue {
        column: String,
        row: u64,
        message: String,
    },

    /// A file that does not follow the expected format.
    #[error("{}, line {line}{}: {message}", path.display(), column.as_ref().map(|c| format!(", column {c}")).unwrap_or_default())]
    Parse {
        path: PathBuf,
        line: u64,
        column: Option<String>,
        message: String,
    },

    /// A column that the schema requires and the file lacks.
    #[error("{}: column {column:?} not found; the header has {available:?}", path.display())]
    ColumnNotFound {
        path: PathBuf,
        column: String,
        available: Vec<String>,
    },

    /// An operating-system failure while reading or writing a file.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Build a [`Error::Shape`] from anything printable.
    pub fn shape(
        argument: impl Into<String>,
        expected: impl Into<String>,
        received: impl Into<String>,
    ) -> Self {
        Error::Shape {
            argument: argument.into(),
            expected: expected.into(),
            received: received.into(),
        }
    }

    /// Build a [`Error::InvalidArgument`] from anything printable.
    pub fn invalid(argument: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            argument: argument.into(),
            message: message.into(),
        }
    }
}

/// Check that `values` has `expected` elements, naming `argument` otherwise.
pub fn check_len<T>(argument: &str, values: &[T], expected: usize) -> Result<()> {
    if values.len() == expected {
        Ok(())
    } else {
        Err(Error::shape(
            argument,
            format!("length {expected}"),
            format!("length {}", values.len()),
        ))
    }
}
