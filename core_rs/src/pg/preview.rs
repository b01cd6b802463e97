//! Result previews: the first rows of a statement's result, as the client got them.
//!
//! A [`PreviewBuilder`] is filled from DataRow frames exactly as they are forwarded (after
//! masking), so a preview never holds a value the client did not see. Each value becomes text:
//! text-format values as UTF-8 (lossy), binary-format values as `\x` + hex, NULL as `None`; a value
//! whose format is unknown (the gateway never saw the result's RowDescription) is shown as text
//! when it is valid UTF-8, else in hex. Values and column names are cut at
//! [`PreviewLimits::chars`] characters (`…` appended when cut), and a preview keeps at most
//! [`PreviewLimits::rows`] rows and about [`PREVIEW_BYTES`] bytes of text in all: once that budget
//! is spent, the values still to come in the row become `…` and no further row is taken. So the
//! memory a statement's preview takes is bounded whatever the size of its result.

use std::fmt::Write as _;

use bytes::Bytes;

use super::mask::Masking;
use super::messages::bind::FORMAT_TEXT;
use super::messages::row_description::RowDescription;
use super::messages::FromBytes;

/// The text a preview keeps per statement (column names and values), in bytes.
pub const PREVIEW_BYTES: usize = 4096;
/// At most this many values per row (and column names) are kept: PostgreSQL's limit on the
/// columns of a result (`MaxTupleAttributeNumber`).
pub const PREVIEW_COLUMNS: usize = 1664;
/// Column names are masked (like every recorded text) from at most this many bytes before they
/// are cut; PostgreSQL's names are at most 63 bytes.
const NAME_BYTES: usize = 256;
const ELLIPSIS: char = '…';

/// How much of each result previews keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PreviewLimits {
    /// Rows per statement; 0: no previews.
    pub rows: usize,
    /// Characters per value and column name (at least 1).
    pub chars: usize,
}

/// The first rows of the first result set of a statement that returned rows, as forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Preview {
    /// Column names (masked; empty when the gateway did not see the RowDescription).
    pub columns: Vec<String>,
    /// Rows, each value as text (`None`: NULL).
    pub rows: Vec<Vec<Option<String>>>,
}

/// How one column's values are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Binary,
    /// Not known: text when valid UTF-8, else hex.
    Unknown,
}

/// A preview being filled, one DataRow at a time.
#[derive(Debug)]
pub struct PreviewBuilder {
    preview: Preview,
    formats: Vec<Format>,
    limits: PreviewLimits,
    /// Bytes of text still allowed.
    budget: usize,
    /// The result set the preview was taken from has ended: later ones add nothing.
    pub sealed: bool,
}

impl PreviewBuilder {
    /// A preview of rows described by `shape` (a RowDescription body and the per-column result
    /// formats; empty formats: those of the description), or of rows of unknown shape. Column
    /// names are masked with `masking` before they are cut.
    pub fn new(shape: Option<(&Bytes, &[i16])>, limits: PreviewLimits, masking: Option<&Masking>) -> Self {
        let limits = PreviewLimits { rows: limits.rows, chars: limits.chars.max(1) };
        let mut builder = Self {
            preview: Preview::default(),
            formats: Vec::new(),
            limits,
            budget: PREVIEW_BYTES,
            sealed: false,
        };
        let Some((rd, formats)) = shape else { return builder };
        let Ok(description) = RowDescription::from_bytes(rd) else { return builder };
        for (i, field) in description.fields.iter().take(PREVIEW_COLUMNS).enumerate() {
            let format = if formats.is_empty() { field.format } else { formats.get(i).copied().unwrap_or(0) };
            builder.formats.push(if format == FORMAT_TEXT { Format::Text } else { Format::Binary });
            let raw = field.name.get(..field.name.len().min(NAME_BYTES)).unwrap_or_default();
            let mut name = String::from_utf8_lossy(raw).into_owned();
            if let Some(m) = masking {
                name = m.record(name);
            }
            let name = builder.text(name.as_bytes(), field.name.len() > NAME_BYTES);
            builder.preview.columns.push(name);
        }
        builder
    }

    /// Whether the preview can take another row.
    pub fn open(&self) -> bool {
        !self.sealed && self.preview.rows.len() < self.limits.rows && self.budget > 0
    }

    /// Adds one DataRow frame (type byte, length word, body) as forwarded. Returns whether
    /// another row may follow; a frame that does not parse adds nothing and closes the preview.
    pub fn push(&mut self, frame: &[u8]) -> bool {
        if !self.open() {
            return false;
        }
        match self.row(frame) {
            Some(row) => {
                self.preview.rows.push(row);
                self.open()
            }
            None => {
                self.sealed = true;
                false
            }
        }
    }

    /// The preview so far.
    pub fn finish(self) -> Preview {
        self.preview
    }

    fn row(&mut self, frame: &[u8]) -> Option<Vec<Option<String>>> {
        let body = frame.get(5..)?;
        let n = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
        let mut values = Vec::with_capacity(n.min(PREVIEW_COLUMNS));
        let mut pos = 2;
        for i in 0..n {
            let len = i32::from_be_bytes(body.get(pos..pos + 4)?.try_into().ok()?);
            let start = pos + 4;
            let value = if len < 0 {
                pos = start;
                None
            } else {
                let end = start.checked_add(usize::try_from(len).ok()?)?;
                pos = end;
                Some(body.get(start..end)?)
            };
            if i >= PREVIEW_COLUMNS {
                continue; // still walked, to check the frame
            }
            let format = self.formats.get(i).copied().unwrap_or(Format::Unknown);
            values.push(value.map(|v| match format {
                Format::Text => self.text(v, false),
                Format::Binary => self.hex(v),
                Format::Unknown if self.looks_like_text(v) => self.text(v, false),
                Format::Unknown => self.hex(v),
            }));
        }
        (pos == body.len()).then_some(values)
    }

    /// The longest a rendered value may be now, in characters and bytes.
    fn room(&self) -> (usize, usize) {
        (self.limits.chars, self.budget)
    }

    /// Enough of `v` for `chars` + 1 characters of at most four bytes each.
    fn head<'a>(&self, v: &'a [u8]) -> &'a [u8] {
        v.get(..v.len().min(self.limits.chars.saturating_add(1).saturating_mul(4))).unwrap_or_default()
    }

    /// Whether the part of `v` a preview would show is UTF-8 (a character cut at its end is fine).
    fn looks_like_text(&self, v: &[u8]) -> bool {
        std::str::from_utf8(self.head(v)).map_or_else(|e| e.error_len().is_none(), |_| true)
    }

    /// Text (UTF-8, lossy) cut at the limits; `cut` when `v` is already a cut of the value.
    fn text(&mut self, v: &[u8], cut: bool) -> String {
        let (chars, bytes) = self.room();
        let head = self.head(v);
        let mut cut = cut || head.len() < v.len();
        let mut out = String::new();
        for (n, c) in String::from_utf8_lossy(head).chars().enumerate() {
            if n == chars || out.len() + c.len_utf8() > bytes {
                cut = true;
                break;
            }
            out.push(c);
        }
        self.spend(out, cut)
    }

    /// `\x` + hex, cut at the limits.
    fn hex(&mut self, v: &[u8]) -> String {
        let (chars, bytes) = self.room();
        let limit = chars.min(bytes);
        let full = 2 + 2 * v.len();
        let shown = v.get(..v.len().min(limit.saturating_sub(1) / 2)).unwrap_or_default();
        let mut out = String::with_capacity(2 + 2 * shown.len());
        out.push_str("\\x");
        for b in shown {
            let _ = write!(out, "{b:02x}");
        }
        out.truncate(limit.min(full));
        self.spend(out, full > limit)
    }

    fn spend(&mut self, mut out: String, cut: bool) -> String {
        self.budget = self.budget.saturating_sub(out.len());
        if cut {
            out.push(ELLIPSIS);
            self.budget = self.budget.saturating_sub(ELLIPSIS.len_utf8());
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn limits(rows: usize, chars: usize) -> PreviewLimits {
        PreviewLimits { rows, chars }
    }

    fn frame(values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut body = (values.len() as u16).to_be_bytes().to_vec();
        for v in values {
            match v {
                Some(v) => {
                    body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    body.extend_from_slice(v);
                }
                None => body.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        let mut out = vec![b'D'];
        out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn text_is_cut_at_characters_not_bytes() {
        let mut b = PreviewBuilder::new(None, limits(5, 3), None);
        assert!(b.push(&frame(&[Some("ééé".as_bytes()), Some("éééé".as_bytes()), Some(b"ab")])));
        let p = b.finish();
        assert_eq!(p.rows, [[Some("ééé".to_string()), Some("ééé…".to_string()), Some("ab".to_string())]]);
    }

    #[test]
    fn hex_is_cut_at_characters() {
        let mut b = PreviewBuilder::new(None, limits(5, 5), None);
        b.push(&frame(&[Some(b"\xff\x00"), Some(b"\xff\x00\x01"), Some(b"\xff")]));
        assert_eq!(
            b.finish().rows,
            [[Some("\\xff0…".to_string()), Some("\\xff0…".to_string()), Some("\\xff".to_string())]]
        );
        let mut b = PreviewBuilder::new(None, limits(5, 6), None);
        b.push(&frame(&[Some(b"\xff\x00"), Some(b"\xff\x00\x01")]));
        assert_eq!(b.finish().rows, [[Some("\\xff00".to_string()), Some("\\xff00…".to_string())]]);
    }

    #[test]
    fn malformed_rows_close_the_preview() {
        let mut b = PreviewBuilder::new(None, limits(5, 10), None);
        let mut bad = frame(&[Some(b"abc")]);
        bad.push(0);
        assert!(!b.push(&bad));
        assert!(!b.push(&frame(&[Some(b"abc")])));
        assert!(b.finish().rows.is_empty());
    }
}
