//! `StartupPacket` and `decode_startup`.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::pg::messages::startup::{
    decode_startup as decode, StartupPacket as Packet, DEFAULT_MAX_STARTUP_SIZE,
};

/// One decoded startup-phase packet from a client.
#[pyclass(frozen, module = "hoopgw._core", name = "StartupPacket")]
pub struct StartupPacket {
    /// "ssl", "gssenc", "cancel" or "startup".
    #[pyo3(get)]
    kind: &'static str,
    /// Protocol version (major, minor) of a StartupMessage; (0, 0) otherwise.
    #[pyo3(get)]
    protocol: (u16, u16),
    /// Startup parameters in wire order.
    #[pyo3(get)]
    params: Vec<(String, String)>,
    /// CancelRequest backend process id (0 otherwise).
    #[pyo3(get)]
    process_id: i32,
    secret_key: Vec<u8>,
}

#[pymethods]
impl StartupPacket {
    /// CancelRequest secret key (empty otherwise).
    #[getter]
    fn secret_key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.secret_key)
    }

    fn __repr__(&self) -> String {
        // parameters may carry secrets (e.g. options): show their names only
        let names: Vec<&str> = self.params.iter().map(|(k, _)| k.as_str()).collect();
        format!(
            "StartupPacket(kind={:?}, protocol={:?}, params={names:?}, process_id={})",
            self.kind, self.protocol, self.process_id
        )
    }
}

impl From<Packet> for StartupPacket {
    fn from(p: Packet) -> Self {
        let mut out = Self {
            kind: "startup",
            protocol: (0, 0),
            params: Vec::new(),
            process_id: 0,
            secret_key: Vec::new(),
        };
        match p {
            Packet::SslRequest => out.kind = "ssl",
            Packet::GssEncRequest => out.kind = "gssenc",
            Packet::CancelRequest { process_id, secret_key } => {
                out.kind = "cancel";
                out.process_id = process_id;
                out.secret_key = secret_key.to_vec();
            }
            Packet::Startup(m) => {
                out.protocol = (m.major, m.minor);
                out.params = m.params;
            }
        }
        out
    }
}

/// Decode one startup packet from the front of `data`: `(consumed, packet)`, or `(0, None)`.
#[pyfunction]
#[pyo3(signature = (data, max_size = DEFAULT_MAX_STARTUP_SIZE), text_signature = "(data, max_size=10000)")]
fn decode_startup(data: &[u8], max_size: usize) -> PyResult<(usize, Option<StartupPacket>)> {
    Ok(match decode(data, max_size)? {
        Some((consumed, packet)) => (consumed, Some(packet.into())),
        None => (0, None),
    })
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<StartupPacket>()?;
    m.add_function(wrap_pyfunction!(decode_startup, m)?)?;
    Ok(())
}
