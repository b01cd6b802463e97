//! `Framer`: incremental splitter of typed messages for the authentication phase.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use crate::pg::Framer as Inner;

/// Incremental splitter of typed messages (1 type byte + int32 length + body).
#[pyclass(module = "hoopgw._core", name = "Framer")]
pub struct Framer {
    inner: Inner,
}

#[pymethods]
impl Framer {
    // `__new__` takes anything and `__init__` configures, so that the signature is the one of
    // `__init__`, as in the stub (a plain Python class).
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        Self { inner: Inner::new(crate::DEFAULT_MAX_MESSAGE_SIZE) }
    }

    #[pyo3(signature = (max_message_size = crate::DEFAULT_MAX_MESSAGE_SIZE))]
    fn __init__(&mut self, max_message_size: usize) {
        self.inner = Inner::new(max_message_size);
    }

    fn feed(&mut self, data: &[u8]) {
        self.inner.feed(data);
    }

    /// Return `(type_byte, body)` of the next complete message, or None.
    fn next_message<'py>(&mut self, py: Python<'py>) -> PyResult<Option<(u8, Bound<'py, PyBytes>)>> {
        Ok(self.inner.next_message()?.map(|(code, body)| (code, PyBytes::new(py, &body))))
    }

    /// Return and clear any buffered bytes that are not yet consumed.
    fn take_remaining<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.take_remaining())
    }

    #[getter]
    fn buffered(&self) -> usize {
        self.inner.buffered()
    }
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Framer>()
}
