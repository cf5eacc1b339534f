//! The library's one error type: every variant says what went wrong and where (file, field, value).

use std::path::PathBuf;

/// Everything that can go wrong in masklab's library code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An N:M pattern string or value that does not describe a valid pattern.
    #[error("bad pattern `{value}`: {reason}")]
    Pattern {
        /// What the user wrote.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// A matrix shape that does not tile into the blocks or groups a structure needs.
    #[error("shape {rows}x{cols} does not tile: {reason}")]
    Shape {
        /// Rows of the matrix (`out`).
        rows: usize,
        /// Columns of the matrix (`in`).
        cols: usize,
        /// Which tiling failed.
        reason: String,
    },
    /// A command-line or API argument with a value that cannot be used.
    #[error("invalid {field} `{value}`: {reason}")]
    Invalid {
        /// The argument or field name.
        field: String,
        /// The value given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// An experiment spec that cannot be parsed or validated.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Spec {
        /// The spec file.
        path: PathBuf,
        /// 1-based line of the offending item, when known.
        line: Option<usize>,
        /// What is wrong, naming the field.
        message: String,
    },
    /// A file that could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A run directory that another masklab process holds (its `.lock`).
    #[error("{}: another masklab process is using this run directory ({holder}); wait for it or choose another --out", dir.display())]
    RunLocked {
        /// The run directory.
        dir: PathBuf,
        /// Who holds the lock (pid, host, since when), as the lock file says.
        holder: String,
    },
    /// A run (or shard) that has not finished all its cells, asked for something that needs them.
    #[error("{}: the run is not complete ({done} of {planned} cells); finish it with --resume {} {then}", dir.join("manifest.json").display(), dir.display())]
    RunIncomplete {
        /// The run directory.
        dir: PathBuf,
        /// Cells done.
        done: usize,
        /// Cells planned.
        planned: usize,
        /// When to resume it (`first`, `before comparing`).
        then: &'static str,
    },
    /// A file whose content is not what masklab expects.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A failure inside polars while building, reading or writing a table.
    #[error("table {context}: {source}")]
    Table {
        /// What masklab was doing.
        context: String,
        /// The polars error.
        source: polars::error::PolarsError,
    },
    /// A failure inside candle.
    #[error("tensor {context}: {source}")]
    Tensor {
        /// What masklab was doing.
        context: String,
        /// The candle error.
        source: candle_core::Error,
    },
    /// A feature that is not available for this input (e.g. a solver for another M).
    #[error("{what} is not supported: {reason}")]
    Unsupported {
        /// What was asked for.
        what: String,
        /// Why it cannot be done.
        reason: String,
    },
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Invalid`] for a field and value.
    pub fn invalid(field: &str, value: impl ToString, reason: impl ToString) -> Self {
        Error::Invalid {
            field: field.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        }
    }

    /// An [`Error::Table`] with context.
    pub fn table(context: impl ToString) -> impl FnOnce(polars::error::PolarsError) -> Self {
        let context = context.to_string();
        move |source| Error::Table { context, source }
    }

    /// An [`Error::Tensor`] with context.
    pub fn tensor(context: impl ToString) -> impl FnOnce(candle_core::Error) -> Self {
        let context = context.to_string();
        move |source| Error::Tensor { context, source }
    }
}
