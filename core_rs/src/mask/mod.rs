//! The masking engine: finds sensitive values in bytes and rewrites them, at wire speed.
//!
//! One [`Masker`] is compiled per connection from its `[[masking]]` blocks and shared by every
//! session (it is immutable; per-session state is a [`Counts`]). Callers:
//! - the PostgreSQL session masks DataRow fields, COPY data and Notice/Error fields, and the SQL
//!   text and Bind parameters it records ([`Masker::mask`], [`Masker::render_whole`]);
//! - byte streams (SSH, Kubernetes, HTTP) use a [`StreamMasker`], which masks a value split across
//!   reads by keeping a bounded carry window.
//!
//! Public API (stable; the implementation behind it is free to change):
//! - [`Style`], [`MaskConfig`], [`MaskConfigError`], [`Match`], [`Counts`]
//! - [`Masker::new`], [`Masker::find`], [`Masker::mask`], [`Masker::mask_into`],
//!   [`Masker::render_whole`], [`Masker::column_rule`], [`Masker::label_rule`], ...
//! - [`StreamMasker`]
//! - [`BUILTIN_DETECTORS`]

pub mod detect;
mod engine;
mod glob;
mod stream;
#[cfg(test)]
mod tests;

pub use engine::{Masker, Match, COLUMNS_COUNTER, WORDS_COUNTER};
pub use stream::StreamMasker;

/// Names of the built-in detectors, in the order of their ids.
pub const BUILTIN_DETECTORS: &[&str] = &[
    "credit_card",
    "us_ssn",
    "iban",
    "email",
    "phone",
    "us_routing",
    "ipv4",
    "aws_access_key",
    "jwt",
    "password_assignment",
];

/// How a matched value (or a whole column value) is rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Style {
    /// A fixed mask, whatever the value (`*****`).
    Redact,
    /// Keep the last four alphanumeric characters, `*` for the other alphanumerics, separators kept.
    Last4,
    /// A deterministic keyed token (HMAC-SHA256 of the normalised value): equal in, equal out.
    Hash,
    /// Column rules only: the value becomes SQL NULL.
    Null,
}

impl Style {
    /// Parses `redact`, `last4`, `hash` or `null`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "redact" => Some(Self::Redact),
            "last4" => Some(Self::Last4),
            "hash" => Some(Self::Hash),
            "null" => Some(Self::Null),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redact => "redact",
            Self::Last4 => "last4",
            Self::Hash => "hash",
            Self::Null => "null",
        }
    }
}

/// What to mask: compiled into a [`Masker`].
#[derive(Debug, Clone, Default)]
pub struct MaskConfig {
    /// Built-in detectors by name, each with its style (not `Null`).
    pub detectors: Vec<(String, Style)>,
    /// Custom regexes: (name, pattern, style), Rust regex syntax. Names are counted like detectors
    /// (patterns of the same name share a counter). Like a detector's, a match needs a boundary: the
    /// characters before and after it are not ASCII word characters.
    pub patterns: Vec<(String, String, Style)>,
    /// Words and phrases, matched case-insensitively on word boundaries, counted as `words`.
    pub words: Vec<(String, Style)>,
    /// Column rules: `table.column` or `schema.table.column` globs (`*`, `?`), with their style.
    pub columns: Vec<(String, Style)>,
    /// Key of the `hash` style (required, at least 16 bytes, when any style is `Hash`).
    pub hash_key: Vec<u8>,
}

/// A configuration that cannot be compiled; the message says which entry and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MaskConfigError(pub String);

/// Masked-value counters of one session or stream, indexed like [`Masker::counter_names`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts(pub Vec<u64>);

impl Counts {
    #[inline]
    pub fn add(&mut self, id: usize, n: u64) {
        if id >= self.0.len() {
            self.0.resize(id + 1, 0);
        }
        if let Some(c) = self.0.get_mut(id) {
            *c = c.saturating_add(n);
        }
    }

    /// Non-zero counters as (name, count), given the masker's counter names.
    pub fn named<'a>(&self, names: &'a [String]) -> Vec<(&'a str, u64)> {
        self.0.iter().zip(names).filter(|(c, _)| **c > 0).map(|(c, n)| (n.as_str(), *c)).collect()
    }
}
