//! Masking of a PostgreSQL session's server-to-client traffic, and of what it records.
//!
//! [`Masking`] is the per-session part: the shared [`Masker`], the names of the tables and types
//! this session has met ([`Catalog`]), the per-result-shape [`Plan`]s and the session's counters.
//! A plan says, per result column, what to do with its values ([`Action`]); building one may need
//! catalog names the session does not have yet: then the session pauses and asks the gateway for
//! them ([`CatalogRequest`]), which looks them up on its own side connection.

mod catalog;
mod copy;
mod fields;
mod plan;
mod rows;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

pub use catalog::{Catalog, TableInfo, TypeKind};
pub use copy::{CopyFormat, CopyShape};
pub use plan::{Action, FieldInfo, Plan};

use crate::mask::{Counts, Masker};

/// Plans remembered per session (by RowDescription body and result formats).
const MAX_PLANS: usize = 256;

/// Names the session needs before it can go on masking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogRequest {
    /// Table OIDs whose schema, name and column names are needed.
    pub tables: Vec<u32>,
    /// Type OIDs (not built in) whose category is needed.
    pub types: Vec<u32>,
    /// A COPY TO STDOUT started: the SQL that started it and which COPY of it (0-based), to be
    /// described (format, options, columns) by the gateway.
    pub copy: Option<(String, usize)>,
}

impl CatalogRequest {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty() && self.types.is_empty() && self.copy.is_none()
    }
}

/// Per-session masking state.
#[derive(Debug)]
pub struct Masking {
    pub masker: Arc<Masker>,
    pub catalog: Catalog,
    pub counts: Counts,
    plans: HashMap<(Bytes, Vec<i16>, bool), Option<Arc<Plan>>>,
    scratch: Vec<u8>,
}

impl Masking {
    pub fn new(masker: Arc<Masker>) -> Self {
        Self {
            masker,
            catalog: Catalog::default(),
            counts: Counts::default(),
            plans: HashMap::new(),
            scratch: Vec::new(),
        }
    }

    /// The plan for rows described by `row_description` (a RowDescription body) in `formats`
    /// (per column, already resolved), or the names still needed to build it. `None` = nothing to
    /// do for these rows.
    pub fn plan(
        &mut self,
        row_description: &Bytes,
        formats: Vec<i16>,
        trusted: bool,
    ) -> Result<Option<Arc<Plan>>, CatalogRequest> {
        let key = (row_description.clone(), formats, trusted);
        if let Some(plan) = self.plans.get(&key) {
            return Ok(plan.clone());
        }
        let fields = FieldInfo::parse_row_description(row_description);
        let plan = plan::build(&self.masker, &self.catalog, &fields, &key.1, trusted)?;
        if self.plans.len() >= MAX_PLANS {
            self.plans.clear();
        }
        self.plans.insert(key, plan.clone());
        Ok(plan)
    }

    /// The plan of a described COPY's columns (values of binary copies are binary). Names the
    /// gateway did not supply count as dropped tables / non-text types.
    pub fn copy_plan(&mut self, shape: &CopyShape) -> Option<Arc<Plan>> {
        let format = i16::from(shape.format == CopyFormat::Binary);
        let formats = vec![format; shape.fields.len()];
        match plan::build(&self.masker, &self.catalog, &shape.fields, &formats, true) {
            Ok(plan) => plan,
            Err(need) => {
                for oid in need.tables {
                    self.catalog.add_table(oid, None);
                }
                for oid in need.types {
                    self.catalog.add_type(oid, TypeKind::Other);
                }
                plan::build(&self.masker, &self.catalog, &shape.fields, &formats, true).ok().flatten()
            }
        }
    }

    /// Masks one DataRow frame (whole frame) by `plan` (`None`: unknown shape, every value is
    /// scanned as text). Returns the replacement frame, or `None` when nothing changed.
    pub fn data_row(&mut self, frame: &[u8], plan: Option<&Plan>) -> Option<Bytes> {
        rows::mask_data_row(frame, plan, &self.masker, &mut self.counts, &mut self.scratch)
    }

    /// Masks the text fields of a NoticeResponse or ErrorResponse frame.
    pub fn notice(&mut self, frame: &[u8]) -> Option<Bytes> {
        fields::mask_notice(frame, &self.masker, &mut self.counts)
    }

    /// Masks the value of a FunctionCallResponse frame (as text; a binary value with a match
    /// becomes NULL).
    pub fn function_result(&mut self, frame: &[u8]) -> Option<Bytes> {
        let body = frame.get(5..)?;
        let len = i32::from_be_bytes(body.get(..4)?.try_into().ok()?);
        let value = body.get(4..4 + usize::try_from(len).ok()?)?;
        let action = if std::str::from_utf8(value).is_ok() { Action::Scan } else { Action::ScanOrNull };
        self.scratch.clear();
        let new = match rows::mask_value(value, action, &self.masker, &mut self.counts, &mut self.scratch) {
            rows::Value::Same => return None,
            rows::Value::Null => None,
            rows::Value::New => Some(&self.scratch[..]),
        };
        let mut out = Vec::with_capacity(9 + new.map_or(0, <[u8]>::len));
        out.push(b'V');
        out.extend_from_slice(&i32::try_from(8 + new.map_or(0, <[u8]>::len)).ok()?.to_be_bytes());
        match new {
            Some(v) => {
                out.extend_from_slice(&i32::try_from(v.len()).ok()?.to_be_bytes());
                out.extend_from_slice(v);
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
        Some(Bytes::from(out))
    }

    /// Masks the channel and payload of a NotificationResponse frame.
    pub fn notification(&mut self, frame: &[u8]) -> Option<Bytes> {
        fields::mask_notification(frame, &self.masker, &mut self.counts)
    }

    /// Masks one CopyData frame of a COPY TO STDOUT.
    pub fn copy_data(&mut self, frame: &[u8], shape: &mut copy::CopyState) -> Option<Bytes> {
        copy::mask_copy_data(frame, shape, &self.masker, &mut self.counts)
    }

    /// Masks a recorded parameter: binary ones (`\x<hex>`) are masked as the bytes they stand for,
    /// then shown in hex again.
    pub fn record_param(&self, text: String) -> String {
        let Some(hex) = text.strip_prefix("\\x") else { return self.record(text) };
        let bytes: Option<Vec<u8>> = (0..hex.len() / 2)
            .map(|i| hex.get(2 * i..2 * i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect();
        let Some(bytes) = bytes else { return self.record(text) };
        let mut ignored = Counts::default();
        match self.masker.mask(&bytes, &mut ignored) {
            Some(masked) => {
                let mut s = String::with_capacity(2 + 2 * masked.len());
                s.push_str("\\x");
                for b in masked {
                    s.push_str(&format!("{b:02x}"));
                }
                s
            }
            None => text,
        }
    }

    /// Masks text that is about to be recorded (SQL, parameters, error messages); not counted.
    pub fn record(&self, text: String) -> String {
        let mut ignored = Counts::default();
        match self.masker.mask(text.as_bytes(), &mut ignored) {
            Some(masked) => String::from_utf8_lossy(&masked).into_owned(),
            None => text,
        }
    }
}

pub use copy::CopyState;
