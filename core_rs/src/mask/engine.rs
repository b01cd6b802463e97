//! [`Masker`]: the compiled engine (SKELETON — the implementation is being written).

use super::{Counts, MaskConfig, MaskConfigError, Style};

/// Counter id suffix: the last counter name is always `columns` (values masked by column rules).
pub const COLUMNS_COUNTER: &str = "columns";

/// One match: `data[start..end]` was found by counter `id` (index into `counter_names`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub start: usize,
    pub end: usize,
    pub id: u16,
}

/// A compiled masking configuration. Immutable, `Send + Sync`, shared behind an `Arc`.
#[derive(Debug)]
pub struct Masker {
    names: Vec<String>,
    columns: Vec<(String, Style)>,
}

impl Masker {
    /// Compiles a configuration.
    pub fn new(cfg: MaskConfig) -> Result<Self, MaskConfigError> {
        let mut names: Vec<String> = cfg.detectors.iter().map(|(n, _)| n.clone()).collect();
        names.push(COLUMNS_COUNTER.to_string());
        Ok(Self { names, columns: cfg.columns })
    }

    /// Names of the counters: enabled detectors, custom pattern names, `words`, then `columns`.
    pub fn counter_names(&self) -> &[String] {
        &self.names
    }

    /// Id of the `columns` counter.
    pub fn columns_counter(&self) -> usize {
        self.names.len().saturating_sub(1)
    }

    /// Whether any detector, pattern or word is configured (values must be scanned).
    pub fn has_detectors(&self) -> bool {
        self.names.len() > 1
    }

    /// Whether any column rule is configured.
    pub fn has_columns(&self) -> bool {
        !self.columns.is_empty()
    }

    /// Longest match any detector can produce (bytes): the carry window of a stream.
    pub fn max_match_len(&self) -> usize {
        256
    }

    /// Appends the matches in `data` to `out`: sorted by start, non-overlapping.
    pub fn find(&self, _data: &[u8], _out: &mut Vec<Match>) {}

    /// Masks `data`: `None` when nothing matched (no allocation), else the rewritten bytes.
    /// Counts every masked value.
    pub fn mask(&self, data: &[u8], counts: &mut Counts) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.mask_into(data, counts, &mut out).then_some(out)
    }

    /// Appends the masked form of `data` to `out` when something matched (returns true); when
    /// nothing matched returns false and leaves `out` untouched.
    pub fn mask_into(&self, _data: &[u8], _counts: &mut Counts, _out: &mut Vec<u8>) -> bool {
        false
    }

    /// Appends the rendering of a whole value under a column rule with `style` (not `Null`).
    pub fn render_whole(&self, value: &[u8], style: Style, out: &mut Vec<u8>) {
        let _ = (value, style);
        out.extend_from_slice(b"*****");
    }

    /// The style of the first column rule matching `schema.table.column` (or `table.column`).
    pub fn column_rule(&self, _schema: &str, _table: &str, _column: &str) -> Option<Style> {
        None
    }

    /// The style of the first column rule whose column part matches a result column label
    /// (used for columns that come from no table).
    pub fn label_rule(&self, _label: &str) -> Option<Style> {
        None
    }
}
