//! [`Masker`]: the compiled engine.
//!
//! A scan is the built-in detector scanner ([`super::detect::scan`]) plus, only when custom patterns
//! or words are configured, one pass of a single multi-pattern regex (`regex_automata::meta`) that
//! holds all of them. The two sorted lists are merged into one sorted, non-overlapping list in which
//! overlapping candidates are merged: the span is their union (no part of any of them stays in
//! clear), counted once and rendered by the rule of the leftmost candidate, of two starting at the
//! same byte the longer one (the built-in detector on a tie).

use std::cell::Cell;
use std::fmt;

use hmac::{Hmac, Mac};
use regex_automata::meta::Regex;
use regex_automata::Input;
use regex_syntax::hir::{Hir, Look};
use sha2::Sha256;

use super::detect::{self, Builtin, Enabled, Found};
use super::glob::ColumnGlob;
use super::{Counts, MaskConfig, MaskConfigError, Style};

/// Counter id suffix: the last counter name is always `columns` (values masked by column rules).
pub const COLUMNS_COUNTER: &str = "columns";

/// Counter of the configured words and phrases.
pub const WORDS_COUNTER: &str = "words";

/// What `redact` writes.
const REDACTED: &[u8] = b"*****";

/// Cap of the longest match of a bounded custom pattern (the carry window of a stream).
const MAX_PATTERN_LEN: usize = 4096;

/// Window assumed for a custom pattern without a maximum length (`+`, `*`, `{n,}`): a longer match
/// split across two reads of a stream may be missed.
const UNBOUNDED_PATTERN_LEN: usize = 256;

/// Bytes that the searches for overlapping custom-pattern matches may read again beyond the input's
/// length (see [`Masker::find_hits`]).
const OVERLAP_REREAD_MIN: usize = 4096;

/// Matches kept in the thread-local scratch space beyond which it is released after use.
const SCRATCH_KEEP: usize = 4096;

/// One match: `data[start..end]` was found by counter `id` (index into `counter_names`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub start: usize,
    pub end: usize,
    pub id: u16,
}

/// A match by rule (not by counter: the words of one counter may have different styles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) rule: u16,
}

/// How a value is normalised before it is hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Norm {
    /// As found.
    AsIs,
    /// ASCII digits only (numeric detectors: separators do not change the token).
    Digits,
    /// Lower case (words match case-insensitively).
    Lower,
}

/// One detector, pattern or word: the counter it adds to and how its matches are rendered.
#[derive(Debug, Clone, Copy)]
struct Rule {
    counter: u16,
    style: Style,
    norm: Norm,
}

/// Reusable buffers of a scan.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    found: Vec<Found>,
    regex_hits: Vec<Hit>,
    pub(crate) hits: Vec<Hit>,
}

impl Scratch {
    /// Releases buffers grown by a big input.
    pub(crate) fn trim(&mut self) {
        if self.hits.capacity() > SCRATCH_KEEP {
            self.hits = Vec::new();
        }
        if self.regex_hits.capacity() > SCRATCH_KEEP {
            self.regex_hits = Vec::new();
        }
        if self.found.capacity() > SCRATCH_KEEP {
            self.found = Vec::new();
        }
    }
}

thread_local! {
    static SCRATCH: Cell<Option<Scratch>> = const { Cell::new(None) };
}

/// Runs `f` with the thread's scratch space (taken out while in use: a nested call gets a fresh one).
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut scratch = SCRATCH.try_with(Cell::take).ok().flatten().unwrap_or_default();
    let r = f(&mut scratch);
    scratch.trim();
    let _ = SCRATCH.try_with(|cell| cell.set(Some(scratch)));
    r
}

/// A compiled masking configuration. Immutable, `Send + Sync`, shared behind an `Arc`.
pub struct Masker {
    names: Vec<String>,
    rules: Vec<Rule>,
    /// Built-in detectors to scan for.
    enabled: Enabled,
    /// Rule of each built-in detector, by `Builtin as usize` (`u16::MAX`: disabled).
    builtin_rule: [u16; Builtin::ALL.len()],
    /// Custom patterns then words, pattern id `i` being rule `regex_base + i`.
    regex: Option<Regex>,
    regex_base: usize,
    columns: Vec<(ColumnGlob, Style)>,
    hmac: Option<Hmac<Sha256>>,
    max_len: usize,
    /// Shortest input that can hold a match: shorter values are not scanned at all.
    min_input: usize,
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // never the key
        f.debug_struct("Masker")
            .field("counters", &self.names)
            .field("patterns", &self.regex.as_ref().map_or(0, Regex::pattern_len))
            .field("columns", &self.columns.len())
            .field("window", &self.max_len)
            .finish_non_exhaustive()
    }
}

fn err<T>(msg: String) -> Result<T, MaskConfigError> {
    Err(MaskConfigError(msg))
}

fn counter_id(names: &mut Vec<String>, name: &str) -> Result<u16, MaskConfigError> {
    if let Some(i) = names.iter().position(|n| n == name) {
        return u16::try_from(i).or_else(|_| err("too many masking counters".into()));
    }
    names.push(name.to_string());
    u16::try_from(names.len() - 1).or_else(|_| err("too many masking counters".into()))
}

/// Parses one regex the way the meta regex does (Unicode, UTF-8), for its `Hir` and its error.
/// The error on one line: what is wrong and where (the caret drawing of its `Display` is dropped).
fn parse_regex(pattern: &str) -> Result<Hir, String> {
    regex_syntax::ParserBuilder::new().build().parse(pattern).map_err(|e| match &e {
        regex_syntax::Error::Parse(e) => format!("{} (at byte {})", e.kind(), e.span().start.offset),
        regex_syntax::Error::Translate(e) => format!("{} (at byte {})", e.kind(), e.span().start.offset),
        _ => e.to_string(),
    })
}

/// The regex of a word or phrase: escaped, case-insensitive (boundaries are added like a pattern's).
fn word_regex(word: &str) -> String {
    let mut re = String::with_capacity(word.len() + 8);
    re.push_str("(?i:");
    regex_syntax::escape_into(word, &mut re);
    re.push(')');
    re
}

/// Every match needs a boundary, as a detector's: the character before and after it is not a letter
/// or digit. The regex checks ASCII neighbours itself (half word boundaries: of `ab|abc` it picks the
/// alternative that ends on a boundary, and they keep it on the fast DFA engines); a non-ASCII
/// neighbour is checked by [`unicode_boundaries`] after the regex matched.
fn with_boundaries(hir: Hir) -> Hir {
    Hir::concat(vec![Hir::look(Look::WordStartHalfAscii), hir, Hir::look(Look::WordEndHalfAscii)])
}

/// Whether the characters around `data[start..end]` are not non-ASCII letters or digits (`é`, `Ü`);
/// bytes that are not UTF-8 are no letters.
fn unicode_boundaries(data: &[u8], start: usize, end: usize) -> bool {
    let before = data.get(..start).unwrap_or_default();
    let after = data.get(end..).unwrap_or_default();
    let letter = |c: Option<char>| c.is_some_and(|c| !c.is_ascii() && c.is_alphanumeric());
    let prev_non_ascii = before.last().is_some_and(|b| !b.is_ascii());
    let next_non_ascii = after.first().is_some_and(|b| !b.is_ascii());
    !(prev_non_ascii && letter(last_char(before)) || next_non_ascii && letter(first_char(after)))
}

/// The UTF-8 character that `data` ends with, if it ends with a valid one.
fn last_char(data: &[u8]) -> Option<char> {
    let from = data.len().saturating_sub(4);
    let tail = data.get(from..)?;
    // the last character starts at the last byte that is not a continuation byte
    let at = tail.iter().rposition(|&b| b & 0xC0 != 0x80)?;
    std::str::from_utf8(tail.get(at..)?).ok()?.chars().next()
}

/// The UTF-8 character that `data` starts with, if it starts with a valid one.
fn first_char(data: &[u8]) -> Option<char> {
    let head = data.get(..data.len().min(4))?;
    head.utf8_chunks().next()?.valid().chars().next()
}

/// The longest match of a custom pattern, for the stream window.
/// Shortest text holding a match of a built-in detector (bytes).
fn builtin_min_input(b: Builtin) -> usize {
    match b {
        Builtin::CreditCard => 13,
        Builtin::UsSsn => 11,
        Builtin::Iban => 15,
        Builtin::Email => 6,
        Builtin::Phone | Builtin::UsRouting => 9,
        Builtin::Ipv4 => 7,
        Builtin::AwsAccessKey => 20,
        Builtin::Jwt => 28,
        Builtin::PasswordAssignment => 5,
    }
}

fn pattern_window(hir: &Hir) -> usize {
    hir.properties().maximum_len().map_or(UNBOUNDED_PATTERN_LEN, |n| n.min(MAX_PATTERN_LEN))
}

impl Masker {
    /// Compiles a configuration.
    pub fn new(cfg: MaskConfig) -> Result<Self, MaskConfigError> {
        let mut names: Vec<String> = Vec::new();
        let mut rules: Vec<Rule> = Vec::new();
        let mut enabled = Enabled(0);
        let mut builtin_rule = [u16::MAX; Builtin::ALL.len()];
        let mut max_len = 0usize;
        let mut min_input = usize::MAX;
        let mut uses_hash = false;

        let check_style = |what: &str, style: Style| -> Result<(), MaskConfigError> {
            if style == Style::Null {
                return err(format!(
                    "{what}: style \"null\" is only for column rules (use redact, last4 or hash)"
                ));
            }
            Ok(())
        };

        // built-in detectors, in config order; the same one twice must agree on its style
        let mut detector_styles: Vec<(Builtin, Style)> = Vec::new();
        for (name, style) in &cfg.detectors {
            let Some(builtin) = Builtin::from_name(name) else {
                let known: Vec<&str> = Builtin::ALL.iter().map(|b| b.name()).collect();
                return err(format!("unknown detector {name:?} (known: {})", known.join(", ")));
            };
            check_style(&format!("detector {name:?}"), *style)?;
            if let Some((_, prev)) = detector_styles.iter().find(|(b, _)| *b == builtin) {
                if prev != style {
                    return err(format!(
                        "detector {name:?} is configured with two styles ({} and {})",
                        prev.as_str(),
                        style.as_str()
                    ));
                }
                continue;
            }
            detector_styles.push((builtin, *style));
        }
        for (builtin, style) in detector_styles {
            let counter = counter_id(&mut names, builtin.name())?;
            let rule = u16::try_from(rules.len()).or_else(|_| err("too many masking rules".into()))?;
            if let Some(slot) = builtin_rule.get_mut(builtin as usize) {
                *slot = rule;
            }
            let norm = if builtin.numeric() { Norm::Digits } else { Norm::AsIs };
            // secrets are never partly shown
            let style = if builtin.secret() && style == Style::Last4 { Style::Redact } else { style };
            rules.push(Rule { counter, style, norm });
            enabled = enabled.with(builtin);
            max_len = max_len.max(builtin.window());
            min_input = min_input.min(builtin_min_input(builtin));
            uses_hash |= style == Style::Hash;
        }

        // custom patterns, then words: one multi-pattern regex
        let regex_base = rules.len();
        let mut hirs: Vec<Hir> = Vec::with_capacity(cfg.patterns.len() + cfg.words.len());
        for (name, pattern, style) in &cfg.patterns {
            if name.is_empty() {
                return err(format!("pattern {pattern:?}: empty name"));
            }
            if Builtin::from_name(name).is_some() || name == WORDS_COUNTER || name == COLUMNS_COUNTER {
                return err(format!("pattern name {name:?} is reserved (a built-in detector or counter)"));
            }
            check_style(&format!("pattern {name:?}"), *style)?;
            let hir = match parse_regex(pattern) {
                Ok(hir) => hir,
                Err(e) => return err(format!("pattern {name:?}: invalid regex {pattern:?}: {e}")),
            };
            if hir.properties().minimum_len() == Some(0) {
                return err(format!("pattern {name:?}: regex {pattern:?} can match the empty string"));
            }
            max_len = max_len.max(pattern_window(&hir));
            min_input = min_input.min(hir.properties().minimum_len().unwrap_or(1));
            hirs.push(with_boundaries(hir));
            let counter = counter_id(&mut names, name)?;
            rules.push(Rule { counter, style: *style, norm: Norm::AsIs });
            uses_hash |= *style == Style::Hash;
        }
        if !cfg.words.is_empty() {
            let counter = counter_id(&mut names, WORDS_COUNTER)?;
            for (word, style) in &cfg.words {
                if word.trim().is_empty() {
                    return err(format!("word {word:?}: empty"));
                }
                check_style(&format!("word {word:?}"), *style)?;
                let hir = match parse_regex(&word_regex(word)) {
                    Ok(hir) => hir,
                    Err(e) => return err(format!("word {word:?}: {e}")),
                };
                max_len = max_len.max(pattern_window(&hir));
                min_input = min_input.min(hir.properties().minimum_len().unwrap_or(1));
                hirs.push(with_boundaries(hir));
                rules.push(Rule { counter, style: *style, norm: Norm::Lower });
                uses_hash |= *style == Style::Hash;
            }
        }
        let regex = if hirs.is_empty() {
            None
        } else {
            match Regex::builder().build_many_from_hir(&hirs) {
                Ok(re) => Some(re),
                Err(e) => return err(format!("patterns and words do not compile together: {e}")),
            }
        };

        let mut columns = Vec::with_capacity(cfg.columns.len());
        for (glob, style) in &cfg.columns {
            columns.push((ColumnGlob::parse(glob).map_err(MaskConfigError)?, *style));
            uses_hash |= *style == Style::Hash;
        }
        names.push(COLUMNS_COUNTER.to_string());
        if names.len() > usize::from(u16::MAX) || rules.len() >= usize::from(u16::MAX) {
            return err("too many masking rules".into());
        }

        let hmac = if uses_hash {
            if cfg.hash_key.len() < 16 {
                return err(format!(
                    "the hash style needs a key of at least 16 bytes (got {})",
                    cfg.hash_key.len()
                ));
            }
            match Hmac::<Sha256>::new_from_slice(&cfg.hash_key) {
                Ok(mac) => Some(mac),
                Err(e) => return err(format!("hash key: {e}")),
            }
        } else {
            None
        };

        Ok(Self { names, rules, enabled, builtin_rule, regex, regex_base, columns, hmac, max_len, min_input })
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
        !self.rules.is_empty()
    }

    /// Whether any column rule is configured.
    pub fn has_columns(&self) -> bool {
        !self.columns.is_empty()
    }

    /// Longest match any detector can produce (bytes): the carry window of a stream.
    ///
    /// Custom patterns count with their maximum length, capped at 4096 bytes; a pattern without one
    /// (`+`, `*`, `{n,}`) counts as 256 bytes, so a longer match split across two reads of a stream
    /// may be missed (a whole buffer is always masked completely).
    pub fn max_match_len(&self) -> usize {
        self.max_len
    }

    /// Appends the matches in `data` to `out`: sorted by start, non-overlapping.
    pub fn find(&self, data: &[u8], out: &mut Vec<Match>) {
        if !self.has_detectors() || data.len() < self.min_input {
            return;
        }
        with_scratch(|s| {
            self.find_hits(data, s);
            out.extend(s.hits.iter().filter_map(|h| {
                let rule = self.rules.get(usize::from(h.rule))?;
                Some(Match { start: h.start, end: h.end, id: rule.counter })
            }));
        });
    }

    /// Fills `s.hits` with the matches in `data`, by rule: sorted, non-overlapping, non-empty.
    pub(crate) fn find_hits(&self, data: &[u8], s: &mut Scratch) {
        s.hits.clear();
        s.found.clear();
        if !self.enabled.is_empty() {
            detect::scan(data, self.enabled, &mut s.found);
        }
        let builtin = s.found.iter().filter_map(|f| {
            let rule = *self.builtin_rule.get(f.detector as usize)?;
            (rule != u16::MAX && f.start < f.end && f.end <= data.len()).then_some(Hit {
                start: f.start,
                end: f.end,
                rule,
            })
        });
        let Some(re) = &self.regex else {
            s.hits.extend(builtin);
            return;
        };
        s.regex_hits.clear();
        // After a match, the search goes on from the byte after its start, so that a match starting
        // inside it (which the regex would not report) extends it. Those searches read again what
        // lies before the end of the current span: at most about the input's length in all, then
        // they go on from the end of the span (only overlapping matches of custom patterns, many
        // and long, get there).
        let mut reread_budget = data.len().saturating_add(OVERLAP_REREAD_MIN);
        let mut at = 0;
        while at < data.len() {
            let Some(m) = re.search(&Input::new(data).span(at..data.len())) else { break };
            if m.is_empty() {
                // not from a valid configuration (patterns that can match empty are refused)
                at = m.end() + 1;
                continue;
            }
            if !unicode_boundaries(data, m.start(), m.end()) {
                // glued to a non-ASCII letter: look for a match starting after this one's start
                at = m.start() + 1;
                continue;
            }
            let Ok(rule) = u16::try_from(self.regex_base + m.pattern().as_usize()) else {
                at = m.end();
                continue;
            };
            let span_end = match s.regex_hits.last_mut() {
                Some(last) if m.start() < last.end => {
                    last.end = last.end.max(m.end());
                    last.end
                }
                _ => {
                    s.regex_hits.push(Hit { start: m.start(), end: m.end(), rule });
                    m.end()
                }
            };
            let next = m.start() + 1;
            let reread = span_end.saturating_sub(next);
            if reread <= reread_budget {
                reread_budget -= reread;
                at = next;
            } else {
                at = span_end;
            }
        }
        merge(builtin, s.regex_hits.iter().copied(), &mut s.hits);
    }

    /// Masks `data`: `None` when nothing matched (no allocation), else the rewritten bytes.
    /// Counts every masked value.
    pub fn mask(&self, data: &[u8], counts: &mut Counts) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.mask_into(data, counts, &mut out).then_some(out)
    }

    /// Appends the masked form of `data` to `out` when something matched (returns true); when
    /// nothing matched returns false and leaves `out` untouched.
    pub fn mask_into(&self, data: &[u8], counts: &mut Counts, out: &mut Vec<u8>) -> bool {
        if !self.has_detectors() || data.len() < self.min_input {
            return false;
        }
        with_scratch(|s| {
            self.find_hits(data, s);
            if s.hits.is_empty() {
                return false;
            }
            out.reserve(data.len() + 16 * s.hits.len());
            self.render_hits(data, 0, data.len(), &s.hits, counts, out);
            true
        })
    }

    /// Appends `data[from..to]` to `out` with the hits inside it rendered (a hit starting before
    /// `from` is rendered from `from` on); counts them.
    pub(crate) fn render_hits(
        &self,
        data: &[u8],
        from: usize,
        to: usize,
        hits: &[Hit],
        counts: &mut Counts,
        out: &mut Vec<u8>,
    ) {
        let mut pos = from;
        for h in hits {
            if h.end <= pos {
                continue;
            }
            if h.start >= to {
                break;
            }
            let start = h.start.max(pos);
            let end = h.end.min(to);
            out.extend_from_slice(data.get(pos..start).unwrap_or_default());
            let value = data.get(start..end).unwrap_or_default();
            match self.rules.get(usize::from(h.rule)) {
                Some(rule) => {
                    let name = self.names.get(usize::from(rule.counter)).map_or("", String::as_str);
                    self.render(value, rule.style, name, rule.norm, out);
                    counts.add(usize::from(rule.counter), 1);
                }
                None => out.extend_from_slice(REDACTED),
            }
            pos = end;
        }
        if pos < to {
            out.extend_from_slice(data.get(pos..to).unwrap_or_default());
        }
    }

    /// Appends the rendering of a whole value under a column rule with `style` (`Null` is rendered
    /// as `redact`: the caller turns the value into SQL NULL before it gets here).
    pub fn render_whole(&self, value: &[u8], style: Style, out: &mut Vec<u8>) {
        self.render(value, style, COLUMNS_COUNTER, Norm::AsIs, out);
    }

    fn render(&self, value: &[u8], style: Style, name: &str, norm: Norm, out: &mut Vec<u8>) {
        match style {
            Style::Redact | Style::Null => out.extend_from_slice(REDACTED),
            Style::Last4 => last4(value, out),
            Style::Hash => match &self.hmac {
                Some(mac) => hash_token(mac.clone(), name, norm, value, out),
                None => out.extend_from_slice(REDACTED),
            },
        }
    }

    /// The style of the first column rule matching `schema.table.column` (or `table.column`).
    pub fn column_rule(&self, schema: &str, table: &str, column: &str) -> Option<Style> {
        self.columns.iter().find(|(g, _)| g.matches(schema, table, column)).map(|(_, s)| *s)
    }

    /// The style of the first column rule whose column part matches a result column label
    /// (used for columns that come from no table).
    pub fn label_rule(&self, label: &str) -> Option<Style> {
        self.columns.iter().find(|(g, _)| g.matches_label(label)).map(|(_, s)| *s)
    }
}

/// Merges two sorted, non-overlapping lists into `out`, sorted and non-overlapping: overlapping
/// matches become one, their union, with the rule of the leftmost (of two starting at the same
/// byte the longer one, the first list on a tie).
fn merge(a: impl Iterator<Item = Hit>, b: impl Iterator<Item = Hit>, out: &mut Vec<Hit>) {
    let mut a = a.peekable();
    let mut b = b.peekable();
    let mut end = 0usize;
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => x.start < y.start || (x.start == y.start && x.end >= y.end),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_a { a.next() } else { b.next() };
        if let Some(h) = next {
            match out.last_mut() {
                Some(last) if h.start < end => {
                    last.end = last.end.max(h.end);
                    end = last.end;
                }
                _ => {
                    end = h.end;
                    out.push(h);
                }
            }
        }
    }
}

/// `last4`: letters and digits become `*` except the last four, and at most half of them (so a
/// short value is never shown whole: `10.0.0.1` → `**.*.0.1`); separators are kept. Each character
/// becomes one `*` (no byte-length leak of non-ASCII letters); bytes that are not UTF-8 count as
/// letters.
fn last4(value: &[u8], out: &mut Vec<u8>) {
    if value.is_ascii() {
        // the common case, byte by byte
        let n = value.iter().filter(|b| b.is_ascii_alphanumeric()).count();
        let hide = n - n.min(8) / 2;
        let mut i = 0usize;
        out.extend(value.iter().map(|&b| {
            if b.is_ascii_alphanumeric() {
                i += 1;
                if i <= hide {
                    return b'*';
                }
            }
            b
        }));
        return;
    }
    let maskable = |c: char| c.is_alphanumeric();
    let mut n = 0usize;
    for chunk in value.utf8_chunks() {
        n += chunk.valid().chars().filter(|&c| maskable(c)).count() + chunk.invalid().len();
    }
    let keep = n.min(8) / 2;
    let hide = n - keep;
    let mut i = 0usize;
    let mut buf = [0u8; 4];
    for chunk in value.utf8_chunks() {
        for c in chunk.valid().chars() {
            if maskable(c) {
                if i < hide {
                    out.push(b'*');
                } else {
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                i += 1;
            } else {
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
        for &b in chunk.invalid() {
            out.push(if i < hide { b'*' } else { b });
            i += 1;
        }
    }
}

/// `hash`: `tok_` + 16 lowercase hex digits of HMAC-SHA256(key, name + 0x00 + normalised value).
fn hash_token(mut mac: Hmac<Sha256>, name: &str, norm: Norm, value: &[u8], out: &mut Vec<u8>) {
    mac.update(name.as_bytes());
    mac.update(&[0]);
    match norm {
        Norm::AsIs => mac.update(value),
        Norm::Digits => {
            for run in value.split(|b| !b.is_ascii_digit()) {
                mac.update(run);
            }
        }
        Norm::Lower if value.is_ascii() => {
            let mut buf = [0u8; 64];
            for chunk in value.chunks(buf.len()) {
                let part = buf.get_mut(..chunk.len()).unwrap_or_default();
                part.copy_from_slice(chunk);
                part.make_ascii_lowercase();
                mac.update(part);
            }
        }
        Norm::Lower => mac.update(String::from_utf8_lossy(value).to_lowercase().as_bytes()),
    }
    let digest = mac.finalize().into_bytes();
    out.extend_from_slice(b"tok_");
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in digest.iter().take(8) {
        out.push(HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0'));
        out.push(HEX.get(usize::from(b & 15)).copied().unwrap_or(b'0'));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(start: usize, end: usize, rule: u16) -> Hit {
        Hit { start, end, rule }
    }

    #[test]
    fn merge_leftmost_then_longest() {
        let mut out = Vec::new();
        let a = [hit(0, 4, 0), hit(10, 12, 0), hit(20, 30, 0)];
        let b = [hit(2, 6, 1), hit(10, 15, 1), hit(25, 27, 1), hit(30, 31, 1)];
        merge(a.into_iter(), b.into_iter(), &mut out);
        // overlapping matches merge into their union, with the rule of the leftmost (then longest)
        assert_eq!(out, vec![hit(0, 6, 0), hit(10, 15, 1), hit(20, 30, 0), hit(30, 31, 1)]);

        out.clear();
        let a = [hit(0, 4, 0), hit(5, 9, 0), hit(12, 14, 0)];
        let b = [hit(3, 6, 1), hit(8, 13, 1)];
        merge(a.into_iter(), b.into_iter(), &mut out);
        assert_eq!(out, vec![hit(0, 14, 0)], "a chain of overlaps is one span");

        out.clear();
        merge([hit(1, 3, 0)].into_iter(), [hit(1, 3, 1)].into_iter(), &mut out);
        assert_eq!(out, vec![hit(1, 3, 0)], "a tie goes to the built-in detector");

        out.clear();
        merge([].into_iter(), [hit(0, 1, 1), hit(1, 2, 1)].into_iter(), &mut out);
        assert_eq!(out, vec![hit(0, 1, 1), hit(1, 2, 1)]);
    }

    #[test]
    fn last4_keeps_at_most_half() {
        let l4 = |v: &[u8]| {
            let mut out = Vec::new();
            last4(v, &mut out);
            out
        };
        assert_eq!(l4(b"4111 1111 1111 1111"), b"**** **** **** 1111");
        assert_eq!(l4(b"10.0.0.1"), b"**.*.0.1");
        assert_eq!(l4(b"abcdefgh"), b"****efgh");
        assert_eq!(l4(b"abcdefg"), b"****efg");
        assert_eq!(l4(b"abcd"), b"**cd");
        assert_eq!(l4(b"abc"), b"**c");
        assert_eq!(l4(b"x"), b"*");
        assert_eq!(l4(b"-"), b"-");
    }

    #[test]
    fn word_regex_is_escaped() {
        assert_eq!(word_regex("Falcon"), "(?i:Falcon)");
        assert_eq!(word_regex("a.b+c"), r"(?i:a\.b\+c)");
    }

    #[test]
    fn unicode_neighbours() {
        assert!(unicode_boundaries(b"x", 0, 1));
        assert!(unicode_boundaries("«x»".as_bytes(), 2, 3));
        assert!(!unicode_boundaries("éx".as_bytes(), 2, 3));
        assert!(!unicode_boundaries("xé".as_bytes(), 0, 1));
        assert!(!unicode_boundaries("x\u{4e2d}".as_bytes(), 0, 1));
        assert!(unicode_boundaries(b"\xe9x\xe9", 1, 2), "not UTF-8: no letter");
        assert!(unicode_boundaries("\u{2003}x\u{2003}".as_bytes(), 3, 4), "em space");
        assert_eq!(last_char("aé".as_bytes()), Some('é'));
        assert_eq!(last_char(b"a\xa9"), None);
        assert_eq!(first_char("éa".as_bytes()), Some('é'));
        assert_eq!(first_char(b"\xa9a"), None);
        assert_eq!(first_char(b""), None);
    }
}
