//! `PgSession` and `Statement`: the relay-phase state machine (the hot path).

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use std::collections::HashMap;

use crate::pg::mask::{CopyFormat, CopyShape, FieldInfo, TableInfo};
use crate::pg::{Forward, Policy, Session, Statement as Inner};

use super::mask::Masker;
use super::policy::{PyCheck, SqlCache};

/// Reads at least this large are processed with the GIL released when masking.
const DETACH_THRESHOLD: usize = 64 * 1024;

/// A catalog request: (table oids, type oids, (copy sql, which COPY of it) or None).
type RequestRow = (Vec<u32>, Vec<u32>, Option<(String, usize)>);
/// A table as the gateway looked it up: (oid, schema, name, {attnum: column name}).
type TableRow = (u32, String, String, HashMap<i16, String>);
/// A described COPY: (format "text"/"csv"/"binary", delimiter, quote, escape, null marker, header,
/// [(table oid, attnum, type oid, label)]).
type CopyRow = (String, String, String, String, String, bool, Vec<(u32, i16, u32, String)>);

/// One statement as the server answered it: the unit of the audit trail.
#[pyclass(frozen, module = "hoopgw._core", name = "Statement")]
pub struct Statement {
    inner: Inner,
}

#[pymethods]
impl Statement {
    #[getter]
    fn kind(&self) -> &'static str {
        self.inner.kind.as_str()
    }

    #[getter]
    fn sql(&self) -> &str {
        &self.inner.sql
    }

    #[getter]
    fn statement_name(&self) -> Option<&str> {
        self.inner.statement_name.as_deref()
    }

    #[getter]
    fn portal(&self) -> Option<&str> {
        self.inner.portal.as_deref()
    }

    #[getter]
    fn params(&self) -> Option<Vec<Option<String>>> {
        self.inner.params.clone()
    }

    #[getter]
    fn tags(&self) -> Vec<String> {
        self.inner.tags.clone()
    }

    #[getter]
    fn rows(&self) -> u64 {
        self.inner.rows
    }

    #[getter]
    fn status(&self) -> &'static str {
        self.inner.status.as_str()
    }

    #[getter]
    fn error(&self) -> Option<(String, String)> {
        self.inner.error.clone()
    }

    #[getter]
    fn started_ns(&self) -> i64 {
        self.inner.started_ns
    }

    #[getter]
    fn ended_ns(&self) -> i64 {
        self.inner.ended_ns
    }

    /// `(columns, rows)` of the first rows of the result as forwarded, or None.
    #[getter]
    #[allow(clippy::type_complexity)]
    fn preview(&self) -> Option<(Vec<String>, Vec<Vec<Option<String>>>)> {
        self.inner.preview.as_ref().map(|p| (p.columns.clone(), p.rows.clone()))
    }

    fn __repr__(&self) -> String {
        // parameters are not shown: they may carry unmasked data
        let s = &self.inner;
        format!(
            "Statement(kind={:?}, sql={:?}, status={:?}, tags={:?}, rows={})",
            s.kind.as_str(),
            s.sql,
            s.status.as_str(),
            s.tags,
            s.rows
        )
    }
}

/// Protocol state of one proxied session after authentication, both directions.
#[pyclass(module = "hoopgw._core", name = "PgSession")]
pub struct PgSession {
    inner: Session,
}

/// The bytes to forward: `data` itself when unchanged, else a new bytes object.
fn forward<'py>(
    py: Python<'py>,
    data: Bound<'py, PyBytes>,
    chunk: &Bytes,
    fwd: Forward,
) -> PyResult<Bound<'py, PyBytes>> {
    match fwd {
        Forward::All => Ok(data),
        Forward::Split { head, range } => {
            let tail = chunk.get(range).unwrap_or_default();
            if head.is_empty() {
                return Ok(PyBytes::new(py, tail));
            }
            PyBytes::new_with(py, head.len() + tail.len(), |out| {
                let (a, b) = out.split_at_mut(head.len());
                a.copy_from_slice(&head);
                b.copy_from_slice(tail);
                Ok(())
            })
        }
        Forward::Rewritten(bytes) => Ok(PyBytes::new(py, &bytes)),
    }
}

/// A zero-copy `Bytes` view of a Python bytes object (kept alive by the view).
fn chunk_of(data: &Bound<'_, PyBytes>) -> Bytes {
    Bytes::from_owner(PyBackedBytes::from(data.clone()))
}

#[pymethods]
impl PgSession {
    // `__new__` takes anything and `__init__` configures, so that the signature is the one of
    // `__init__`, as in the stub (a plain Python class).
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        Self { inner: Session::new(crate::DEFAULT_MAX_MESSAGE_SIZE) }
    }

    #[pyo3(signature = (max_message_size = crate::DEFAULT_MAX_MESSAGE_SIZE, masker = None))]
    fn __init__(&mut self, max_message_size: usize, masker: Option<PyRef<'_, Masker>>) {
        self.inner = Session::new(max_message_size);
        self.inner.set_masker(masker.map(|m| m.inner()));
    }

    /// Names the session waits for before it can go on masking server data, or None:
    /// `(table oids, type oids, (copy sql, index of the COPY in it) or None)`.
    #[getter]
    fn catalog_request(&self) -> Option<RequestRow> {
        self.inner.catalog_request().map(|r| (r.tables.clone(), r.types.clone(), r.copy.clone()))
    }

    /// Supplies the looked-up names; then feed the server side again (b"" is fine) to resume.
    #[pyo3(signature = (tables, types, copy = None))]
    fn resolve(
        &mut self,
        tables: Vec<TableRow>,
        types: Vec<(u32, char)>,
        copy: Option<CopyRow>,
    ) -> PyResult<()> {
        let tables = tables
            .into_iter()
            .map(|(oid, schema, name, columns)| (oid, Some(TableInfo { schema, name, columns })))
            .collect();
        let copy = copy.map(copy_shape).transpose()?;
        self.inner.resolve(tables, types, copy);
        Ok(())
    }

    /// Values masked on the way to the client so far, per detector (and "columns").
    #[getter]
    fn mask_counts(&self) -> HashMap<String, u64> {
        self.inner.mask_counts().into_iter().collect()
    }

    /// Frames from the client: `(forward, terminate, reply)`.
    fn feed_client<'py>(
        &mut self,
        py: Python<'py>,
        data: Bound<'py, PyBytes>,
        now_ns: i64,
    ) -> PyResult<(Bound<'py, PyBytes>, bool, Option<Bound<'py, PyBytes>>)> {
        let chunk = chunk_of(&data);
        let (fwd, terminate) = self.inner.feed_client(&chunk, now_ns)?;
        let reply = self.inner.take_reply().map(|r| PyBytes::new(py, &r));
        Ok((forward(py, data, &chunk, fwd)?, terminate, reply))
    }

    /// Checks Query, Parse and FunctionCall with `check(sql, cached mask or -1, statement name)
    /// -> (mask, cacheable, error[, hold])`, skipping it for shapes cached with classes in
    /// `allow_mask`.
    fn set_policy(&mut self, cache: Option<PyRef<'_, SqlCache>>, check: Py<PyAny>, allow_mask: u32) {
        let policy = Policy::new(cache.map(|c| c.inner()), Box::new(PyCheck(check)));
        self.inner.set_policy(Some(policy), allow_mask);
    }

    /// Write-ahead audit: note every Query or Execute with a class in `mask` (or unknown
    /// classes) and every FunctionCall as an intent (0: off); inside a transaction block,
    /// statements whose classes are all in `contained` need not wait for their intents.
    fn set_write_ahead(&mut self, mask: u32, contained: u32) {
        self.inner.set_write_ahead(mask, contained);
    }

    /// What the last feed noted for write-ahead: None when nothing, else `(intents, strict,
    /// barrier)`: the statements to record (masked; `status` "ok", no tags), whether the bytes
    /// must wait for them, and whether they must wait for every intent still in flight.
    #[allow(clippy::type_complexity)]
    fn take_intents<'py>(&mut self, py: Python<'py>) -> PyResult<Option<(Bound<'py, PyList>, bool, bool)>> {
        let (intents, strict, barrier) = self.inner.take_intents();
        if intents.is_empty() && !barrier {
            return Ok(None);
        }
        let items = intents
            .into_iter()
            .map(|inner| Bound::new(py, Statement { inner }))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Some((PyList::new(py, items)?, strict, barrier)))
    }

    /// Whether a statement is held for a decision (`release` / `reject`).
    #[getter]
    fn holding(&self) -> bool {
        self.inner.held().is_some()
    }

    /// The held message: `(kind, sql, statement name)`, or None.
    #[getter]
    fn held(&self) -> Option<(&'static str, Option<String>, Option<String>)> {
        let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        self.inner.held().map(|h| (h.kind.as_str(), h.sql.as_ref().map(text), h.name.as_ref().map(text)))
    }

    /// `(complete, binds)` of the held statement's batch: whether its Sync is in (always for a
    /// Query or FunctionCall), and `[(format, value or None)]` of each Bind of the held statement
    /// in it so far, in order.
    #[getter]
    #[allow(clippy::type_complexity)]
    fn held_batch<'py>(&self, py: Python<'py>) -> (bool, Vec<Vec<(i16, Option<Bound<'py, PyBytes>>)>>) {
        let (complete, binds) = self.inner.held_batch();
        let params = binds
            .iter()
            .map(|b| {
                b.params
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (b.param_format(i), v.as_ref().map(|v| PyBytes::new(py, v))))
                    .collect()
            })
            .collect();
        (complete, params)
    }

    /// Lets the held statement go on, then processes what followed it: `(forward, terminate, reply)`.
    fn release<'py>(
        &mut self,
        py: Python<'py>,
        now_ns: i64,
    ) -> PyResult<(Bound<'py, PyBytes>, bool, Option<Bound<'py, PyBytes>>)> {
        let (forward, terminate) = self.inner.release(now_ns)?;
        let reply = self.inner.take_reply().map(|r| PyBytes::new(py, &r));
        Ok((PyBytes::new(py, &forward), terminate, reply))
    }

    /// Answers the held statement with `error`, then processes what followed it:
    /// `(forward, terminate, reply)`.
    fn reject<'py>(
        &mut self,
        py: Python<'py>,
        error: &[u8],
        now_ns: i64,
    ) -> PyResult<(Bound<'py, PyBytes>, bool, Option<Bound<'py, PyBytes>>)> {
        let (forward, terminate) = self.inner.reject(Bytes::copy_from_slice(error), now_ns)?;
        let reply = self.inner.take_reply().map(|r| PyBytes::new(py, &r));
        Ok((PyBytes::new(py, &forward), terminate, reply))
    }

    /// Keeps a preview of the first `rows` rows of each statement's result, each value cut at
    /// `chars` characters (0 rows: off, the default).
    fn set_preview(&mut self, rows: usize, chars: usize) {
        self.inner.set_preview(rows, chars);
    }

    /// Guards server parameters: `[(name, [accepted values])]` (ASCII case-insensitive).
    fn set_param_guard(&mut self, guard: Vec<(String, Vec<String>)>) {
        self.inner.set_param_guard(
            guard
                .into_iter()
                .map(|(n, vs)| (n.into_bytes(), vs.into_iter().map(String::into_bytes).collect()))
                .collect(),
        );
    }

    /// The guarded parameter the server reported with a value not accepted (`name=value`).
    #[getter]
    fn tripped(&self) -> Option<String> {
        self.inner.tripped().map(str::to_owned)
    }

    /// Classes the session may run without asking the check.
    #[getter]
    fn get_allow_mask(&self) -> u32 {
        self.inner.allow_mask()
    }

    #[setter]
    fn set_allow_mask(&mut self, allow_mask: u32) {
        self.inner.set_allow_mask(allow_mask);
    }

    /// Frames from the server: `(forward, done)`.
    fn feed_server<'py>(
        &mut self,
        py: Python<'py>,
        data: Bound<'py, PyBytes>,
        now_ns: i64,
    ) -> PyResult<(Bound<'py, PyBytes>, Option<Bound<'py, PyList>>)> {
        let chunk = chunk_of(&data);
        let inner = &mut self.inner;
        // masking a large read takes a while: let other threads (the audit writer) run meanwhile
        let (fwd, done) = if chunk.len() >= DETACH_THRESHOLD && inner.masking() {
            py.detach(|| inner.feed_server(&chunk, now_ns))?
        } else {
            inner.feed_server(&chunk, now_ns)?
        };
        let done = if done.is_empty() {
            None
        } else {
            let items = done
                .into_iter()
                .map(|inner| Bound::new(py, Statement { inner }))
                .collect::<PyResult<Vec<_>>>()?;
            Some(PyList::new(py, items)?)
        };
        Ok((forward(py, data, &chunk, fwd)?, done))
    }

    /// Transaction status from the last ReadyForQuery: "I", "T" or "E".
    #[getter]
    fn tx_status(&self) -> String {
        self.inner.tx_status().to_string()
    }

    /// Requests sent by the client that the server has not finished answering (0 = idle).
    #[getter]
    fn pending(&self) -> usize {
        self.inner.pending()
    }

    #[getter]
    fn in_copy(&self) -> bool {
        self.inner.in_copy()
    }

    fn __repr__(&self) -> String {
        let s = &self.inner;
        let in_copy = if s.in_copy() { "True" } else { "False" };
        let holding = if s.held().is_some() { ", holding=True" } else { "" };
        format!(
            "PgSession(pending={}, tx_status='{}', in_copy={in_copy}{holding})",
            s.pending(),
            s.tx_status()
        )
    }
}

fn one_byte(name: &str, value: &str) -> PyResult<u8> {
    match value.as_bytes() {
        [b] if b.is_ascii() => Ok(*b),
        _ => Err(pyo3::exceptions::PyValueError::new_err(format!("COPY {name} must be one ASCII character"))),
    }
}

fn copy_shape(row: CopyRow) -> PyResult<CopyShape> {
    let (format, delimiter, quote, escape, null, header, fields) = row;
    let format = match format.as_str() {
        "text" => CopyFormat::Text,
        "csv" => CopyFormat::Csv,
        "binary" => CopyFormat::Binary,
        other => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!("unknown COPY format {other:?}")))
        }
    };
    Ok(CopyShape {
        format,
        delimiter: one_byte("delimiter", &delimiter)?,
        quote: one_byte("quote", &quote)?,
        escape: one_byte("escape", &escape)?,
        null: null.into_bytes(),
        header,
        fields: fields
            .into_iter()
            .map(|(table_oid, attnum, type_oid, label)| FieldInfo {
                table_oid,
                attnum,
                type_oid,
                label: Bytes::from(label.into_bytes()),
                format: 0,
            })
            .collect(),
    })
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Statement>()?;
    m.add_class::<PgSession>()?;
    Ok(())
}
