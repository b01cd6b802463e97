//! Sans-IO protocol engines of the hoopgw access gateway.
//!
//! Bytes in, events and (possibly rewritten) bytes out: nothing here does I/O. Network input never
//! panics; malformed input is a typed error. Python bindings live in [`py`] (feature `python`) and
//! are the only code that touches pyo3.

pub mod mask;
pub mod pg;
pub mod ssh;

#[cfg(feature = "python")]
mod py;

/// Version of this crate, exposed to Python as `hoopgw._core.__version__`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Default guard for one protocol message in either direction (bytes, including the length word).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;
