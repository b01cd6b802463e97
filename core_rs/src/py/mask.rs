//! `Masker`, `MaskStream` and `builtin_detectors()`: the masking engine (`docs/MASKING.md`).

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use crate::mask::{self, Counts, MaskConfig, MaskConfigError, StreamMasker, Style};

/// Inputs from this size on are masked with the GIL released.
const DETACH_MIN: usize = 64 * 1024;

impl From<MaskConfigError> for PyErr {
    fn from(err: MaskConfigError) -> Self {
        PyValueError::new_err(err.0)
    }
}

fn style(what: &str, name: &str, style: &str) -> PyResult<Style> {
    Style::parse(style).ok_or_else(|| {
        PyValueError::new_err(format!(
            "{what} {name:?}: unknown style {style:?} (known: redact, last4, hash, null)"
        ))
    })
}

/// A compiled masking configuration: immutable, shared by every session of a connection.
#[pyclass(frozen, module = "hoopgw._core", name = "Masker")]
pub struct Masker {
    inner: Arc<mask::Masker>,
}

impl Masker {
    /// The engine, for the bindings that mask (the PostgreSQL session).
    pub(crate) fn inner(&self) -> Arc<mask::Masker> {
        Arc::clone(&self.inner)
    }
}

#[pymethods]
impl Masker {
    #[new]
    #[pyo3(signature = (detectors = Vec::new(), patterns = Vec::new(), words = Vec::new(), columns = Vec::new(), hash_key = Vec::new()))]
    fn new(
        detectors: Vec<(String, String)>,
        patterns: Vec<(String, String, String)>,
        words: Vec<(String, String)>,
        columns: Vec<(String, String)>,
        hash_key: Vec<u8>,
    ) -> PyResult<Self> {
        let cfg = MaskConfig {
            detectors: detectors
                .into_iter()
                .map(|(n, s)| Ok((style("detector", &n, &s)?, n)).map(|(s, n)| (n, s)))
                .collect::<PyResult<_>>()?,
            patterns: patterns
                .into_iter()
                .map(|(n, re, s)| Ok((style("pattern", &n, &s)?, n, re)).map(|(s, n, re)| (n, re, s)))
                .collect::<PyResult<_>>()?,
            words: words
                .into_iter()
                .map(|(w, s)| Ok((style("word", &w, &s)?, w)).map(|(s, w)| (w, s)))
                .collect::<PyResult<_>>()?,
            columns: columns
                .into_iter()
                .map(|(g, s)| Ok((style("column rule", &g, &s)?, g)).map(|(s, g)| (g, s)))
                .collect::<PyResult<_>>()?,
            hash_key,
        };
        Ok(Self { inner: Arc::new(mask::Masker::new(cfg)?) })
    }

    /// The masked bytes; `data` itself when nothing matched.
    fn mask<'py>(&self, py: Python<'py>, data: Bound<'py, PyBytes>) -> Bound<'py, PyBytes> {
        let bytes = data.as_bytes();
        let inner = &*self.inner;
        let mut counts = Counts::default();
        let out = if bytes.len() >= DETACH_MIN {
            py.detach(|| inner.mask(bytes, &mut counts))
        } else {
            inner.mask(bytes, &mut counts)
        };
        match out {
            Some(out) => PyBytes::new(py, &out),
            None => data,
        }
    }

    /// The masked text; `text` itself when nothing matched.
    fn mask_text<'py>(&self, py: Python<'py>, text: Bound<'py, PyString>) -> PyResult<Bound<'py, PyString>> {
        let s = text.to_str()?;
        let inner = &*self.inner;
        let mut counts = Counts::default();
        let out = if s.len() >= DETACH_MIN {
            py.detach(|| inner.mask(s.as_bytes(), &mut counts))
        } else {
            inner.mask(s.as_bytes(), &mut counts)
        };
        Ok(match out {
            Some(out) => PyString::new(py, &String::from_utf8_lossy(&out)),
            None => text,
        })
    }

    /// Each value masked on its own; unchanged values are the very objects passed in.
    fn mask_many<'py>(
        &self,
        py: Python<'py>,
        values: Vec<Bound<'py, PyBytes>>,
    ) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let inner = &*self.inner;
        let slices: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        let total: usize = slices.iter().map(|s| s.len()).sum();
        let run = || {
            let mut counts = Counts::default();
            slices.iter().map(|s| inner.mask(s, &mut counts)).collect::<Vec<_>>()
        };
        let masked = if total >= DETACH_MIN { py.detach(run) } else { run() };
        Ok(values
            .into_iter()
            .zip(masked)
            .map(|(value, out)| match out {
                Some(out) => PyBytes::new(py, &out),
                None => value,
            })
            .collect())
    }

    /// `(counter name, start, end)` of every match, sorted.
    fn find(&self, py: Python<'_>, data: &[u8]) -> Vec<(String, usize, usize)> {
        let inner = &*self.inner;
        let mut found = Vec::new();
        if data.len() >= DETACH_MIN {
            py.detach(|| inner.find(data, &mut found));
        } else {
            inner.find(data, &mut found);
        }
        let names = inner.counter_names();
        found
            .into_iter()
            .map(|m| {
                let name = names.get(usize::from(m.id)).cloned().unwrap_or_default();
                (name, m.start, m.end)
            })
            .collect()
    }

    /// A new stream masker sharing this configuration.
    fn stream(&self) -> MaskStream {
        MaskStream { inner: StreamMasker::new(Arc::clone(&self.inner)) }
    }

    #[getter]
    fn counter_names(&self) -> Vec<String> {
        self.inner.counter_names().to_vec()
    }

    #[getter]
    fn window(&self) -> usize {
        self.inner.max_match_len()
    }

    #[getter]
    fn has_detectors(&self) -> bool {
        self.inner.has_detectors()
    }

    #[getter]
    fn has_columns(&self) -> bool {
        self.inner.has_columns()
    }

    fn __repr__(&self) -> String {
        // counters only: never a pattern, a word or the key
        format!("Masker(counters={:?}, window={})", self.inner.counter_names(), self.inner.max_match_len())
    }
}

/// Masking of a byte stream read by read (a value split across reads is still masked).
#[pyclass(module = "hoopgw._core", name = "MaskStream")]
pub struct MaskStream {
    inner: StreamMasker,
}

#[pymethods]
impl MaskStream {
    /// Masked bytes that are safe to emit now.
    fn feed<'py>(&mut self, py: Python<'py>, data: &[u8]) -> Bound<'py, PyBytes> {
        let inner = &mut self.inner;
        let out = if data.len() >= DETACH_MIN { py.detach(|| inner.feed(data)) } else { inner.feed(data) };
        PyBytes::new(py, &out)
    }

    /// Everything held back, masked (end of stream, or idle).
    fn flush<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.flush())
    }

    #[getter]
    fn buffered(&self) -> usize {
        self.inner.buffered()
    }

    /// Non-zero counters of the values masked so far.
    #[getter]
    fn counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (name, n) in self.inner.counts().named(self.inner.masker().counter_names()) {
            dict.set_item(name, n)?;
        }
        Ok(dict)
    }

    fn __repr__(&self) -> String {
        format!("MaskStream(buffered={})", self.inner.buffered())
    }
}

/// Names of the built-in detectors.
#[pyfunction]
fn builtin_detectors() -> Vec<&'static str> {
    mask::BUILTIN_DETECTORS.to_vec()
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Masker>()?;
    m.add_class::<MaskStream>()?;
    m.add_function(wrap_pyfunction!(builtin_detectors, m)?)?;
    Ok(())
}
