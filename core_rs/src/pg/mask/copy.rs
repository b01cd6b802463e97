//! COPY TO STDOUT: every CopyData row goes through the masker. With the copy's shape (format,
//! options and columns, described by the gateway) values are masked per column like DataRow
//! values; without it, text rows are scanned whole and binary tuples value by value.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::plan::{Action, FieldInfo, Plan};
use super::rows::{mask_value, Value};
use crate::mask::{Counts, Masker};

/// Signature, flags and header-extension length of a binary COPY stream.
const BINARY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Csv,
    Binary,
}

/// A COPY's format, options and columns, as the gateway described them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyShape {
    pub format: CopyFormat,
    pub delimiter: u8,
    pub quote: u8,
    pub escape: u8,
    /// The NULL marker of text and CSV rows.
    pub null: Vec<u8>,
    pub header: bool,
    pub fields: Vec<FieldInfo>,
}

/// State of one COPY TO STDOUT in progress.
#[derive(Debug)]
pub struct CopyState {
    pub format: CopyFormat,
    pub shape: Option<CopyShape>,
    pub plan: Option<Arc<Plan>>,
    /// The gateway has described it (or there was nothing to describe).
    pub described: bool,
    rows: u64,
}

impl CopyState {
    /// A copy whose CopyOutResponse announced `binary` or text (text or CSV) rows.
    pub fn new(binary: bool) -> Self {
        let format = if binary { CopyFormat::Binary } else { CopyFormat::Text };
        Self { format, shape: None, plan: None, described: false, rows: 0 }
    }

    /// Installs the described shape and its plan.
    pub fn set_shape(&mut self, shape: CopyShape, plan: Option<Arc<Plan>>) {
        // the server's announcement wins over the description for binary vs text
        if self.format != CopyFormat::Binary && shape.format == CopyFormat::Csv {
            self.format = CopyFormat::Csv;
        }
        self.shape = Some(shape);
        self.plan = plan;
    }
}

/// Masks one CopyData frame (type byte, length word, row); `None` when nothing changed.
pub fn mask_copy_data(
    frame: &[u8],
    st: &mut CopyState,
    masker: &Masker,
    counts: &mut Counts,
) -> Option<Bytes> {
    let data = frame.get(5..)?;
    st.rows += 1;
    let first = st.rows == 1;
    let new = match (&st.shape, st.format) {
        (_, CopyFormat::Binary) => binary(data, first, st.plan.as_deref(), masker, counts),
        (Some(shape), _) if shape.header && first => masker.mask(data, counts),
        (Some(shape), CopyFormat::Text) => text_row(data, shape, st.plan.as_deref(), masker, counts),
        (Some(shape), CopyFormat::Csv) => csv_row(data, shape, st.plan.as_deref(), masker, counts),
        (None, _) => masker.mask(data, counts),
    }?;
    let mut out = BytesMut::with_capacity(new.len() + 5);
    out.put_u8(b'd');
    out.put_i32(i32::try_from(new.len() + 4).ok()?);
    out.extend_from_slice(&new);
    Some(out.freeze())
}

fn value_action(plan: Option<&Plan>, i: usize) -> Action {
    plan.map_or(Action::Scan, |p| p.action(i))
}

/// A text-format row: fields split on the delimiter, `\`-escaped, NULL marker as configured.
fn text_row(
    data: &[u8],
    shape: &CopyShape,
    plan: Option<&Plan>,
    masker: &Masker,
    counts: &mut Counts,
) -> Option<Vec<u8>> {
    let (line, eol) = match data.strip_suffix(b"\n") {
        Some(line) => (line, &b"\n"[..]),
        None => (data, &b""[..]),
    };
    let mut out = Vec::with_capacity(data.len() + 16);
    let mut changed = false;
    let mut scratch = Vec::new();
    for (i, field) in split_escaped(line, shape.delimiter).enumerate() {
        if i > 0 {
            out.push(shape.delimiter);
        }
        if field == shape.null.as_slice() {
            out.extend_from_slice(field);
            continue;
        }
        scratch.clear();
        match mask_value(field, value_action(plan, i), masker, counts, &mut scratch) {
            Value::Same => out.extend_from_slice(field),
            Value::Null => {
                changed = true;
                out.extend_from_slice(&shape.null);
            }
            Value::New => {
                changed = true;
                out.extend_from_slice(&scratch);
            }
        }
    }
    out.extend_from_slice(eol);
    changed.then_some(out)
}

/// Splits a text-format row on `delim`, except where it is escaped data (`\<delim>`).
fn split_escaped(line: &[u8], delim: u8) -> impl Iterator<Item = &[u8]> {
    let mut escaped = false;
    line.split(move |&b| {
        if escaped {
            escaped = false;
            return false;
        }
        if b == b'\\' {
            escaped = true;
            return false;
        }
        b == delim
    })
}

/// A CSV row: quoted or unquoted fields; the NULL marker is an unquoted value.
fn csv_row(
    data: &[u8],
    shape: &CopyShape,
    plan: Option<&Plan>,
    masker: &Masker,
    counts: &mut Counts,
) -> Option<Vec<u8>> {
    let (q, esc, delim) = (shape.quote, shape.escape, shape.delimiter);
    let mut out = Vec::with_capacity(data.len() + 16);
    let mut changed = false;
    let mut scratch = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    loop {
        // one field: [pos, end) raw, value unquoted
        let quoted = data.get(pos) == Some(&q);
        let (value, end): (Vec<u8>, usize) = if quoted {
            let mut v = Vec::new();
            let mut j = pos + 1;
            loop {
                let b = *data.get(j)?;
                let next = data.get(j + 1).copied();
                if b == esc && (next == Some(q) || (esc != q && next == Some(esc))) {
                    v.extend(next);
                    j += 2;
                    continue;
                }
                if b == q {
                    break (v, j + 1);
                }
                v.push(b);
                j += 1;
            }
        } else {
            let rest = data.get(pos..)?;
            let len =
                rest.iter().position(|b| *b == delim || *b == b'\n' || *b == b'\r').unwrap_or(rest.len());
            (rest.get(..len)?.to_vec(), pos + len)
        };
        let raw = data.get(pos..end)?;
        if !quoted && value == shape.null {
            out.extend_from_slice(raw);
        } else {
            scratch.clear();
            match mask_value(&value, value_action(plan, i), masker, counts, &mut scratch) {
                Value::Same => out.extend_from_slice(raw),
                Value::Null => {
                    changed = true;
                    out.extend_from_slice(&shape.null);
                }
                Value::New => {
                    changed = true;
                    out.push(q);
                    for &b in &scratch {
                        if b == q || b == esc {
                            out.push(esc);
                        }
                        out.push(b);
                    }
                    out.push(q);
                }
            }
        }
        i += 1;
        match data.get(end) {
            Some(b) if *b == delim => {
                out.push(delim);
                pos = end + 1;
            }
            _ => {
                out.extend_from_slice(data.get(end..)?);
                break;
            }
        }
    }
    changed.then_some(out)
}

/// A binary-format CopyData: the stream header on the first one, then tuples (field count,
/// then length-prefixed values), or the trailer (-1).
fn binary(
    data: &[u8],
    first: bool,
    plan: Option<&Plan>,
    masker: &Masker,
    counts: &mut Counts,
) -> Option<Vec<u8>> {
    let mut pos = 0;
    if first && data.starts_with(BINARY_SIGNATURE) {
        let ext = u32::from_be_bytes(data.get(15..19)?.try_into().ok()?);
        pos = 19usize.checked_add(usize::try_from(ext).ok()?)?;
    }
    let mut out = data.get(..pos)?.to_vec();
    let mut changed = false;
    let mut scratch = Vec::new();
    while pos < data.len() {
        let n = i16::from_be_bytes(data.get(pos..pos + 2)?.try_into().ok()?);
        out.extend_from_slice(data.get(pos..pos + 2)?);
        pos += 2;
        if n < 0 {
            continue;
        }
        for i in 0..usize::try_from(n).ok()? {
            let len = i32::from_be_bytes(data.get(pos..pos + 4)?.try_into().ok()?);
            if len < 0 {
                out.extend_from_slice(data.get(pos..pos + 4)?);
                pos += 4;
                continue;
            }
            let end = (pos + 4).checked_add(usize::try_from(len).ok()?)?;
            let value = data.get(pos + 4..end)?;
            let action = match plan {
                Some(p) => p.action(i),
                None if std::str::from_utf8(value).is_ok() => Action::Scan,
                None => Action::Keep,
            };
            scratch.clear();
            match mask_value(value, action, masker, counts, &mut scratch) {
                Value::Same => out.extend_from_slice(data.get(pos..end)?),
                Value::Null => {
                    changed = true;
                    out.put_i32(-1);
                }
                Value::New => {
                    changed = true;
                    out.put_i32(i32::try_from(scratch.len()).ok()?);
                    out.extend_from_slice(&scratch);
                }
            }
            pos = end;
        }
    }
    changed.then_some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn text_rows_split_on_unescaped_delimiters_only() {
        let parts: Vec<&[u8]> = split_escaped(b"a\\|b|c\\\\|d", b'|').collect();
        assert_eq!(parts, [&b"a\\|b"[..], b"c\\\\", b"d"]);
    }
}
