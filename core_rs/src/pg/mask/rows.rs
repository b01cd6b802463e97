//! DataRow rewriting: each value by its column's [`Action`], lengths fixed up.

use bytes::{BufMut, Bytes, BytesMut};

use super::plan::{Action, Plan};
use crate::mask::{Counts, Masker, Style};

/// What became of one value.
pub(super) enum Value {
    Same,
    Null,
    /// The new value is in the scratch buffer.
    New,
}

/// Masks the values of one DataRow frame (type byte, length word, body). `None` when nothing
/// changed (the frame is forwarded as it is) or the frame does not parse (the protocol layer
/// has validated it already; nothing is invented for a malformed row).
pub fn mask_data_row(
    frame: &[u8],
    plan: Option<&Plan>,
    masker: &Masker,
    counts: &mut Counts,
    scratch: &mut Vec<u8>,
) -> Option<Bytes> {
    let body = frame.get(5..)?;
    let n = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let mut pos = 2;
    let mut out: Option<BytesMut> = None;
    for i in 0..n {
        let len = i32::from_be_bytes(body.get(pos..pos + 4)?.try_into().ok()?);
        let start = pos + 4;
        let (value, end) = if len < 0 {
            (None, start)
        } else {
            let end = start.checked_add(usize::try_from(len).ok()?)?;
            (Some(body.get(start..end)?), end)
        };
        let action = plan.map_or(Action::Scan, |p| p.action(i));
        let result = match value {
            Some(v) if action != Action::Keep => {
                scratch.clear();
                mask_value(v, action, masker, counts, scratch)
            }
            _ => Value::Same,
        };
        if let Value::Same = result {
            if let Some(o) = out.as_mut() {
                o.extend_from_slice(body.get(pos..end)?);
            }
        } else {
            let o = out.get_or_insert_with(|| {
                let mut o = BytesMut::with_capacity(frame.len() + 64);
                o.extend_from_slice(frame.get(..5 + pos).unwrap_or_default());
                o
            });
            match result {
                Value::Null => o.put_i32(-1),
                _ => {
                    o.put_i32(i32::try_from(scratch.len()).ok()?);
                    o.extend_from_slice(scratch);
                }
            }
        }
        pos = end;
    }
    if pos != body.len() {
        return None;
    }
    let mut o = out?;
    let len = i32::try_from(o.len() - 1).ok()?;
    o.get_mut(1..5)?.copy_from_slice(&len.to_be_bytes());
    Some(o.freeze())
}

/// Masks one non-NULL value by `action`; a new value is left in `scratch`.
pub(super) fn mask_value(
    v: &[u8],
    action: Action,
    masker: &Masker,
    counts: &mut Counts,
    scratch: &mut Vec<u8>,
) -> Value {
    match action {
        Action::Keep => Value::Same,
        Action::Scan => {
            if masker.mask_into(v, counts, scratch) {
                Value::New
            } else {
                Value::Same
            }
        }
        Action::ScanJson => json(v, masker, counts, scratch),
        Action::ScanJsonb => match v.split_first() {
            Some((version, text)) => {
                let mut inner = Vec::new();
                match json(text, masker, counts, &mut inner) {
                    Value::New => {
                        scratch.push(*version);
                        scratch.extend_from_slice(&inner);
                        Value::New
                    }
                    other => other,
                }
            }
            None => Value::Same,
        },
        Action::ScanOrNull => {
            let mut matches = Vec::new();
            masker.find(v, &mut matches);
            if matches.is_empty() {
                return Value::Same;
            }
            for m in &matches {
                counts.add(usize::from(m.id), 1);
            }
            Value::Null
        }
        Action::Whole(style) => {
            counts.add(masker.columns_counter(), 1);
            if style == Style::Null {
                return Value::Null;
            }
            masker.render_whole(v, style, scratch);
            Value::New
        }
        Action::Null => {
            counts.add(masker.columns_counter(), 1);
            Value::Null
        }
    }
}

/// JSON text: masked in place when every match lies inside a string literal (masks never
/// contain quotes or backslashes), else NULL.
fn json(v: &[u8], masker: &Masker, counts: &mut Counts, scratch: &mut Vec<u8>) -> Value {
    let mut matches = Vec::new();
    masker.find(v, &mut matches);
    if matches.is_empty() {
        return Value::Same;
    }
    let inside = inside_strings(v);
    let all_inside = matches.iter().all(|m| inside.get(m.start).copied().unwrap_or(false));
    if !all_inside {
        for m in &matches {
            counts.add(usize::from(m.id), 1);
        }
        return Value::Null;
    }
    if masker.mask_into(v, counts, scratch) {
        Value::New
    } else {
        Value::Same
    }
}

/// For each byte of JSON text: whether it lies inside a string literal.
fn inside_strings(v: &[u8]) -> Vec<bool> {
    let mut out = Vec::with_capacity(v.len());
    let (mut inside, mut escaped) = (false, false);
    for &b in v {
        if inside {
            out.push(true);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                inside = false;
            }
        } else {
            out.push(false);
            inside = b == b'"';
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn json_string_positions() {
        let v = br#"{"a": "x\"y", "b": 1}"#;
        let inside = inside_strings(v);
        let s = std::str::from_utf8(v).unwrap();
        assert!(inside[s.find('x').unwrap()]);
        assert!(inside[s.find('y').unwrap()]);
        assert!(!inside[s.find('1').unwrap()]);
    }
}
