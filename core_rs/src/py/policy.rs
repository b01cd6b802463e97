//! `SqlCache`, `normalize_sql` and the adapter that lets a Python callable be a session's check.

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyTuple};

use crate::pg::sql::{normalize, SqlCache as Inner};
use crate::pg::{Check, CheckFailed, Verdict};

/// Class masks of statement shapes, shared by every session of the gateway.
#[pyclass(frozen, module = "hoopgw._core", name = "SqlCache")]
pub struct SqlCache {
    inner: Inner,
}

impl SqlCache {
    pub(super) fn inner(&self) -> Inner {
        self.inner.clone()
    }
}

#[pymethods]
impl SqlCache {
    #[new]
    fn new(capacity: usize) -> Self {
        Self { inner: Inner::new(capacity) }
    }

    fn get(&self, key: &[u8]) -> Option<u32> {
        self.inner.get(key)
    }

    fn insert(&self, key: &[u8], mask: u32) {
        self.inner.insert(key, mask);
    }

    fn clear(&self) {
        self.inner.clear();
    }

    #[getter]
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self) -> String {
        format!("SqlCache(capacity={}, len={})", self.inner.capacity(), self.inner.len())
    }
}

/// The cache key of a statement's shape, or None when it cannot be derived safely.
#[pyfunction]
fn normalize_sql<'py>(py: Python<'py>, sql: &[u8]) -> Option<Bound<'py, PyBytes>> {
    normalize(sql).map(|key| PyBytes::new(py, &key))
}

/// A Python `check(sql, cached mask or -1, statement name) -> (mask, cacheable, error)`, or
/// `(mask, cacheable, error, hold)`.
pub(super) struct PyCheck(pub(super) Py<PyAny>);

impl Check for PyCheck {
    fn check(
        &mut self,
        sql: Option<&[u8]>,
        cached: Option<u32>,
        name: Option<&[u8]>,
    ) -> Result<Verdict, CheckFailed> {
        Python::attach(|py| {
            let check = self.0.bind(py);
            let sql = sql.map(String::from_utf8_lossy);
            let name = name.map(String::from_utf8_lossy);
            let cached = cached.map_or(-1, i64::from);
            let result = check.call1((sql, cached, name)).and_then(|r| {
                if r.is_instance_of::<PyTuple>() && r.len()? == 4 {
                    r.extract::<(u32, bool, Option<PyBackedBytes>, bool)>()
                } else {
                    r.extract::<(u32, bool, Option<PyBackedBytes>)>().map(|(m, c, e)| (m, c, e, false))
                }
            });
            match result {
                Ok((mask, cacheable, error, hold)) => {
                    Ok(Verdict { mask, cacheable, error: error.map(Bytes::from_owner), hold })
                }
                Err(err) => {
                    let message = err.to_string();
                    // the exception is taken off the interpreter and shown by sys.unraisablehook
                    err.write_unraisable(py, Some(check));
                    Err(CheckFailed(message))
                }
            }
        })
    }
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SqlCache>()?;
    m.add_function(wrap_pyfunction!(normalize_sql, m)?)?;
    Ok(())
}
