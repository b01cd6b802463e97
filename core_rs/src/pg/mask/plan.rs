//! What to do with each column of a result shape.

use std::sync::Arc;

use bytes::Bytes;

use super::catalog::{Catalog, TypeKind};
use super::CatalogRequest;
use crate::mask::{Masker, Style, BUILTIN_DETECTORS, COLUMNS_COUNTER};
use crate::pg::messages::row_description::RowDescription;
use crate::pg::messages::FromBytes;

/// Format code of binary values.
const BINARY: i16 = 1;

/// What happens to the values of one column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Forwarded as they are.
    Keep,
    /// Detectors rewrite matches inside the value.
    Scan,
    /// JSON text: matches inside strings are rewritten; a match elsewhere makes the value NULL.
    ScanJson,
    /// jsonb in binary format: a version byte, then JSON text.
    ScanJsonb,
    /// A value with any match becomes NULL (its type could not parse masked text).
    ScanOrNull,
    /// A column rule on a text column: the whole value is rendered in this style.
    Whole(Style),
    /// A column rule that yields NULL.
    Null,
}

/// Per-column actions of one result shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
}

impl Plan {
    /// The action for column `i` (columns the shape did not describe are scanned).
    #[inline]
    pub fn action(&self, i: usize) -> Action {
        self.actions.get(i).copied().unwrap_or(Action::Scan)
    }
}

/// One result column as described by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldInfo {
    pub table_oid: u32,
    pub attnum: i16,
    pub type_oid: u32,
    pub label: Bytes,
    /// Format code in the RowDescription (0 when described before Bind).
    pub format: i16,
}

impl FieldInfo {
    /// The fields of a RowDescription body (none when it does not parse; it was validated when
    /// it went by).
    pub fn parse_row_description(body: &Bytes) -> Vec<Self> {
        RowDescription::from_bytes(body)
            .map(|rd| {
                rd.fields
                    .into_iter()
                    .map(|f| Self {
                        table_oid: f.table_oid,
                        attnum: f.column,
                        type_oid: f.type_oid,
                        label: f.name,
                        format: f.format,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Builds the plan of `fields` with per-column `formats` (empty = the fields' own formats), or
/// returns the catalog names still needed. `Ok(None)`: every column is kept as it is.
pub fn build(
    masker: &Masker,
    catalog: &Catalog,
    fields: &[FieldInfo],
    formats: &[i16],
    trusted: bool,
) -> Result<Option<Arc<Plan>>, CatalogRequest> {
    let columns = masker.has_columns();
    let mut need = CatalogRequest::default();
    for f in fields {
        if columns
            && f.table_oid != 0
            && (!catalog.has_table(f.table_oid) || catalog.stale_column(f.table_oid, f.attnum))
            && !need.tables.contains(&f.table_oid)
        {
            need.tables.push(f.table_oid);
        }
        if catalog.type_kind(f.type_oid).is_none() && !need.types.contains(&f.type_oid) {
            need.types.push(f.type_oid);
        }
    }
    if !need.is_empty() {
        return Err(need);
    }
    let actions: Vec<Action> = fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let format = formats.get(i).copied().unwrap_or(f.format);
            match action(masker, catalog, f, format) {
                // a shape remembered from an earlier Describe may be stale (SQL-level PREPARE,
                // DEALLOCATE, DECLARE, CLOSE replace what a name stands for): its types are not
                // trusted to skip a value, only its column rules are applied
                Action::Keep if !trusted && masker.has_detectors() => Action::Scan,
                other => other,
            }
        })
        .collect();
    if actions.iter().all(|a| *a == Action::Keep) {
        return Ok(None);
    }
    Ok(Some(Arc::new(Plan { actions })))
}

fn action(masker: &Masker, catalog: &Catalog, f: &FieldInfo, format: i16) -> Action {
    let kind = catalog.type_kind(f.type_oid).unwrap_or(TypeKind::Other);
    if masker.has_columns() {
        let named = catalog.table(f.table_oid).and_then(|t| Some((t, t.columns.get(&f.attnum)?)));
        let rule = match named {
            Some((t, column)) => masker.column_rule(&t.schema, &t.name, column),
            // a computed column, or a table the side connection cannot see (a temp table): the label
            None => masker.label_rule(&String::from_utf8_lossy(&f.label)),
        };
        if let Some(style) = rule {
            return match (kind, style) {
                (_, Style::Null) => Action::Null,
                (TypeKind::Text, style) => Action::Whole(style),
                _ => Action::Null,
            };
        }
    }
    if !masker.has_detectors() || cannot_match(masker, f.type_oid) {
        return Action::Keep;
    }
    match (kind, format == BINARY) {
        (TypeKind::Text, _) => Action::Scan,
        (TypeKind::Json, false) => Action::ScanJson,
        (TypeKind::Json, true) if f.type_oid == 3802 => Action::ScanJsonb,
        (TypeKind::Json, true) => Action::ScanJson,
        (TypeKind::Container, false) => Action::Scan,
        (TypeKind::Other, false) => Action::ScanOrNull,
        // binary values of other types are not text: nothing a detector could find
        // xml is sent as text in binary format too
        (TypeKind::Container, true) if f.type_oid == 142 => Action::Scan,
        (TypeKind::Container | TypeKind::Other, true) => Action::Keep,
    }
}

/// Whether no enabled detector can match the text form of a value of this built-in type: booleans,
/// small integers, dates and times are never scanned (int4 only without `us_routing`: a 9-digit
/// number is its only possible match). Custom patterns could match anything.
fn cannot_match(masker: &Masker, type_oid: u32) -> bool {
    let names = masker.counter_names();
    let builtin_only = names.iter().all(|n| n == COLUMNS_COUNTER || BUILTIN_DETECTORS.contains(&n.as_str()));
    if !builtin_only {
        return false;
    }
    match type_oid {
        // bool, int2, date, time, timestamp, timestamptz, interval, timetz
        16 | 21 | 1082 | 1083 | 1114 | 1184 | 1186 | 1266 => true,
        // int4, oid
        23 | 26 => !names.iter().any(|n| n == "us_routing"),
        _ => false,
    }
}
