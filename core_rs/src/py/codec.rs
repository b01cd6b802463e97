//! Decoders of single message bodies and encoders of whole messages (authentication phase).

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::pg::messages::authentication::Authentication;
use crate::pg::messages::backend_key_data::BackendKeyData;
use crate::pg::messages::error_notice::{ErrorResponse, Fields, NoticeResponse};
use crate::pg::messages::negotiate_protocol_version::NegotiateProtocolVersion;
use crate::pg::messages::parameter_status::ParameterStatus;
use crate::pg::messages::password::{Password, SaslInitialResponse};
use crate::pg::messages::ready_for_query::ReadyForQuery;
use crate::pg::messages::startup::{StartupMessage, StartupPacket};
use crate::pg::messages::{FromBytes, ToBytes, Writer};
use crate::pg::ProtocolError;

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn py_bytes(py: Python<'_>, encoded: Result<Bytes, ProtocolError>) -> PyResult<Bound<'_, PyBytes>> {
    Ok(PyBytes::new(py, &encoded?))
}

/// ErrorResponse / NoticeResponse body -> {field code char: value} (first occurrence wins).
#[pyfunction]
fn decode_fields<'py>(py: Python<'py>, body: &[u8]) -> PyResult<Bound<'py, PyDict>> {
    let e = ErrorResponse::from_bytes(&Bytes::copy_from_slice(body))?;
    let dict = PyDict::new(py);
    for (code, value) in &e.0.fields {
        let key = char::from(*code).to_string();
        if !dict.contains(&key)? {
            dict.set_item(key, lossy(value))?;
        }
    }
    Ok(dict)
}

/// Authentication ('R') body -> (code, remaining data).
#[pyfunction]
fn decode_authentication<'py>(py: Python<'py>, body: &[u8]) -> PyResult<(i32, Bound<'py, PyBytes>)> {
    let a = Authentication::from_bytes(&Bytes::copy_from_slice(body))?;
    Ok((a.code, PyBytes::new(py, &a.data)))
}

/// BackendKeyData ('K') body -> (process id, secret key bytes).
#[pyfunction]
fn decode_backend_key_data<'py>(py: Python<'py>, body: &[u8]) -> PyResult<(i32, Bound<'py, PyBytes>)> {
    let k = BackendKeyData::from_bytes(&Bytes::copy_from_slice(body))?;
    Ok((k.process_id, PyBytes::new(py, &k.secret_key)))
}

#[pyfunction]
fn decode_parameter_status(body: &[u8]) -> PyResult<(String, String)> {
    let p = ParameterStatus::from_bytes(&Bytes::copy_from_slice(body))?;
    Ok((lossy(&p.name), lossy(&p.value)))
}

/// PasswordMessage ('p') body for cleartext passwords -> the password bytes (NUL stripped).
#[pyfunction]
fn decode_password<'py>(py: Python<'py>, body: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let pw = Password::cleartext(&Bytes::copy_from_slice(body))?;
    Ok(PyBytes::new(py, &pw))
}

/// ReadyForQuery ('Z') body -> transaction status "I", "T" or "E".
#[pyfunction]
fn decode_ready_for_query(body: &[u8]) -> PyResult<String> {
    let z = ReadyForQuery::from_bytes(&Bytes::copy_from_slice(body))?;
    Ok(char::from(z.status).to_string())
}

#[pyfunction]
fn encode_message<'py>(py: Python<'py>, type_byte: u8, body: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let mut w = Writer::typed(type_byte, "message");
    w.bytes(body);
    py_bytes(py, w.finish())
}

#[pyfunction]
#[pyo3(signature = (params, protocol = (3, 0)), text_signature = "(params, protocol=(3, 0))")]
fn encode_startup_message<'py>(
    py: Python<'py>,
    params: Vec<(String, String)>,
    protocol: (u16, u16),
) -> PyResult<Bound<'py, PyBytes>> {
    let (major, minor) = protocol;
    py_bytes(py, StartupPacket::Startup(StartupMessage { major, minor, params }).to_bytes())
}

#[pyfunction]
fn encode_ssl_request(py: Python<'_>) -> PyResult<Bound<'_, PyBytes>> {
    py_bytes(py, StartupPacket::SslRequest.to_bytes())
}

#[pyfunction]
fn encode_cancel_request<'py>(
    py: Python<'py>,
    process_id: i32,
    secret_key: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let packet = StartupPacket::CancelRequest { process_id, secret_key: Bytes::copy_from_slice(secret_key) };
    py_bytes(py, packet.to_bytes())
}

#[pyfunction]
#[pyo3(signature = (code, data = b"".as_slice()), text_signature = "(code, data=b'')")]
fn encode_authentication<'py>(py: Python<'py>, code: i32, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    py_bytes(py, Authentication { code, data: Bytes::copy_from_slice(data) }.to_bytes())
}

/// PasswordMessage / SASLResponse ('p') with raw `data` (caller adds a NUL for cleartext/md5).
#[pyfunction]
fn encode_password<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    py_bytes(py, Password { data: Bytes::copy_from_slice(data) }.to_bytes())
}

#[pyfunction]
fn encode_sasl_initial_response<'py>(
    py: Python<'py>,
    mechanism: &str,
    data: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let m = SaslInitialResponse {
        mechanism: Bytes::copy_from_slice(mechanism.as_bytes()),
        data: Bytes::copy_from_slice(data),
    };
    py_bytes(py, m.to_bytes())
}

#[pyfunction]
fn encode_parameter_status<'py>(py: Python<'py>, name: &str, value: &str) -> PyResult<Bound<'py, PyBytes>> {
    let m = ParameterStatus {
        name: Bytes::copy_from_slice(name.as_bytes()),
        value: Bytes::copy_from_slice(value.as_bytes()),
    };
    py_bytes(py, m.to_bytes())
}

#[pyfunction]
fn encode_backend_key_data<'py>(
    py: Python<'py>,
    process_id: i32,
    secret_key: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    py_bytes(py, BackendKeyData { process_id, secret_key: Bytes::copy_from_slice(secret_key) }.to_bytes())
}

#[pyfunction]
fn encode_ready_for_query<'py>(py: Python<'py>, status: &str) -> PyResult<Bound<'py, PyBytes>> {
    let code = match status.as_bytes() {
        [c] => *c,
        _ => 0,
    };
    py_bytes(py, ReadyForQuery::new(code)?.to_bytes())
}

#[pyfunction]
fn encode_negotiate_protocol_version<'py>(
    py: Python<'py>,
    newest_minor: i32,
    unsupported: Vec<String>,
) -> PyResult<Bound<'py, PyBytes>> {
    let m = NegotiateProtocolVersion {
        newest_minor,
        unsupported: unsupported.into_iter().map(Bytes::from).collect(),
    };
    py_bytes(py, m.to_bytes())
}

/// ErrorResponse ('E'), or NoticeResponse ('N') when `notice`; severity e.g. "ERROR", "FATAL".
#[pyfunction]
#[pyo3(signature = (severity, sqlstate, message, detail = None, hint = None, notice = false))]
fn encode_error<'py>(
    py: Python<'py>,
    severity: &str,
    sqlstate: &str,
    message: &str,
    detail: Option<&str>,
    hint: Option<&str>,
    notice: bool,
) -> PyResult<Bound<'py, PyBytes>> {
    let fields = Fields::new(severity, sqlstate, message, detail, hint);
    let encoded = if notice { NoticeResponse(fields).to_bytes() } else { ErrorResponse(fields).to_bytes() };
    py_bytes(py, encoded)
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(decode_fields, m)?)?;
    m.add_function(wrap_pyfunction!(decode_authentication, m)?)?;
    m.add_function(wrap_pyfunction!(decode_backend_key_data, m)?)?;
    m.add_function(wrap_pyfunction!(decode_parameter_status, m)?)?;
    m.add_function(wrap_pyfunction!(decode_password, m)?)?;
    m.add_function(wrap_pyfunction!(decode_ready_for_query, m)?)?;
    m.add_function(wrap_pyfunction!(encode_message, m)?)?;
    m.add_function(wrap_pyfunction!(encode_startup_message, m)?)?;
    m.add_function(wrap_pyfunction!(encode_ssl_request, m)?)?;
    m.add_function(wrap_pyfunction!(encode_cancel_request, m)?)?;
    m.add_function(wrap_pyfunction!(encode_authentication, m)?)?;
    m.add_function(wrap_pyfunction!(encode_password, m)?)?;
    m.add_function(wrap_pyfunction!(encode_sasl_initial_response, m)?)?;
    m.add_function(wrap_pyfunction!(encode_parameter_status, m)?)?;
    m.add_function(wrap_pyfunction!(encode_backend_key_data, m)?)?;
    m.add_function(wrap_pyfunction!(encode_ready_for_query, m)?)?;
    m.add_function(wrap_pyfunction!(encode_negotiate_protocol_version, m)?)?;
    m.add_function(wrap_pyfunction!(encode_error, m)?)?;
    Ok(())
}
