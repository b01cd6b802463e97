//! `SftpSession` and `ScpStream`: the file-transfer protocols of the SSH gateway.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use crate::ssh::sftp::{self, DEFAULT_MAX_PACKET};
use crate::ssh::{Op, Record, ScpRecord, SftpError};

/// Inputs from this size on are parsed with the GIL released.
const DETACH_MIN: usize = 64 * 1024;

impl From<SftpError> for PyErr {
    fn from(err: SftpError) -> Self {
        PyValueError::new_err(err.to_string())
    }
}

fn op_dict<'py>(py: Python<'py>, op: &Op) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("id", op.id)?;
    d.set_item("op", op.kind.as_str())?;
    d.set_item("path", &op.path)?;
    if let Some(pflags) = op.pflags {
        d.set_item("flags", sftp::wire::open_flags(pflags))?;
    }
    if let Some(target) = &op.target {
        d.set_item("target", target)?;
    }
    if let Some(name) = &op.name {
        d.set_item("name", name)?;
    }
    d.set_item("write", op.write)?;
    if op.unknown_handle {
        d.set_item("unknown_handle", true)?;
    }
    Ok(d)
}

fn record_dict<'py>(py: Python<'py>, r: &Record) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("op", r.kind.as_str())?;
    d.set_item("path", &r.path)?;
    if let Some(pflags) = r.pflags {
        d.set_item("flags", sftp::wire::open_flags(pflags))?;
    }
    if let Some(target) = &r.target {
        d.set_item("target", target)?;
    }
    if let Some(name) = &r.name {
        d.set_item("name", name)?;
    }
    if let Some((read, written)) = r.bytes {
        d.set_item("bytes_read", read)?;
        d.set_item("bytes_written", written)?;
    }
    d.set_item("status", r.status.name())?;
    Ok(d)
}

fn records<'py>(py: Python<'py>, rs: &[Record]) -> PyResult<Vec<Bound<'py, PyDict>>> {
    rs.iter().map(|r| record_dict(py, r)).collect()
}

/// Both directions of one `sftp` subsystem channel (SFTP version 3).
#[pyclass(module = "hoopgw._core", name = "SftpSession")]
pub struct SftpSession {
    inner: sftp::SftpSession,
}

#[pymethods]
impl SftpSession {
    // `__new__` takes anything and `__init__` configures, so that the signature is the one of
    // `__init__`, as in the stub (a plain Python class).
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        Self { inner: sftp::SftpSession::new(DEFAULT_MAX_PACKET) }
    }

    #[pyo3(signature = (max_packet = DEFAULT_MAX_PACKET))]
    fn __init__(&mut self, max_packet: usize) {
        self.inner = sftp::SftpSession::new(max_packet);
    }

    /// Client→server bytes as `(bytes, op dict or None)` chunks, in order; a read of whole
    /// pass-through packets with nothing held comes back as the very `data` object.
    #[allow(clippy::type_complexity)]
    fn feed_client<'py>(
        &mut self,
        py: Python<'py>,
        data: Bound<'py, PyBytes>,
    ) -> PyResult<Vec<(Bound<'py, PyBytes>, Option<Bound<'py, PyDict>>)>> {
        let bytes = data.as_bytes();
        let inner = &mut self.inner;
        let held_before = inner.buffered().0;
        let chunks = if bytes.len() >= DETACH_MIN {
            py.detach(|| inner.feed_client(bytes))
        } else {
            inner.feed_client(bytes)
        }?;
        if let [only] = &chunks[..] {
            if only.op.is_none()
                && held_before == 0
                && self.inner.buffered().0 == 0
                && only.data.len() == bytes.len()
            {
                return Ok(vec![(data, None)]);
            }
        }
        chunks
            .iter()
            .map(|c| Ok((PyBytes::new(py, &c.data), c.op.as_ref().map(|op| op_dict(py, op)).transpose()?)))
            .collect()
    }

    /// A STATUS (permission denied) packet to send the client instead of request `request_id`.
    fn refuse<'py>(&mut self, py: Python<'py>, request_id: u32, message: &str) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.refuse(request_id, message))
    }

    /// Server→client bytes: the operation records completed now.
    fn feed_server<'py>(&mut self, py: Python<'py>, data: &[u8]) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let inner = &mut self.inner;
        let recs = if data.len() >= DETACH_MIN {
            py.detach(|| inner.feed_server(data))
        } else {
            inner.feed_server(data)
        }?;
        records(py, &recs)
    }

    /// At channel end: unanswered requests and handles still open.
    fn finish<'py>(&mut self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        records(py, &self.inner.finish())
    }

    #[getter]
    fn version(&self) -> Option<u32> {
        self.inner.version()
    }

    #[getter]
    fn dropped(&self) -> u64 {
        self.inner.dropped()
    }

    fn __repr__(&self) -> String {
        format!("SftpSession(version={:?})", self.inner.version())
    }
}

fn scp_dict<'py>(py: Python<'py>, r: &ScpRecord) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    match r {
        ScpRecord::File { path, mode, size, transferred } => {
            d.set_item("op", "file")?;
            d.set_item("path", path)?;
            d.set_item("mode", mode)?;
            d.set_item("size", size)?;
            if transferred == size {
                d.set_item("status", "ok")?;
            } else {
                d.set_item("status", "incomplete")?;
                d.set_item("transferred", transferred)?;
            }
        }
        ScpRecord::Mkdir { path, mode } => {
            d.set_item("op", "mkdir")?;
            d.set_item("path", path)?;
            d.set_item("mode", mode)?;
        }
        ScpRecord::Error { message } => {
            d.set_item("op", "error")?;
            d.set_item("message", message)?;
        }
    }
    Ok(d)
}

/// One stream of the legacy scp protocol (control lines and file bytes).
#[pyclass(module = "hoopgw._core", name = "ScpStream")]
pub struct ScpStream {
    inner: crate::ssh::ScpStream,
}

#[pymethods]
impl ScpStream {
    #[new]
    fn new() -> Self {
        Self { inner: crate::ssh::ScpStream::new() }
    }

    /// The records completed by `data`.
    fn feed<'py>(&mut self, py: Python<'py>, data: &[u8]) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.inner.feed(data).iter().map(|r| scp_dict(py, r)).collect()
    }

    /// At stream end: a file cut short, or a control line cut short.
    fn finish<'py>(&mut self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.inner.finish().iter().map(|r| scp_dict(py, r)).collect()
    }

    #[getter]
    fn stopped(&self) -> bool {
        self.inner.stopped()
    }
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SftpSession>()?;
    m.add_class::<ScpStream>()?;
    Ok(())
}
