//! Python bindings: the `hoopgw._core` extension module (the only code that touches pyo3).
//!
//! Errors of the Rust core become Python exceptions here, in [`From<ProtocolError> for PyErr`],
//! and nowhere else.

use pyo3::prelude::*;

use crate::pg::ProtocolError;

mod codec;
mod framer;
mod mask;
mod policy;
mod session;
mod ssh;
mod startup;

pyo3::import_exception!(hoopgw.errors, PgProtocolError);

impl From<ProtocolError> for PyErr {
    fn from(err: ProtocolError) -> Self {
        PgProtocolError::new_err(err.to_string())
    }
}

/// Sans-IO PostgreSQL protocol engine of hoopgw: framing, codecs and the session state machine.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", crate::VERSION)?;
    m.add("DEFAULT_MAX_MESSAGE_SIZE", crate::DEFAULT_MAX_MESSAGE_SIZE)?;
    startup::register(m)?;
    framer::register(m)?;
    codec::register(m)?;
    session::register(m)?;
    mask::register(m)?;
    policy::register(m)?;
    ssh::register(m)?;
    // pyo3 maintains `__all__`; the module is private and its stub does not declare one
    if m.hasattr("__all__")? {
        m.delattr("__all__")?;
    }
    Ok(())
}
