//! The masking engine on arbitrary bytes: every detector plus custom patterns and a word, masked
//! whole and as a stream cut into arbitrary reads. Never panics; matches are sorted, non-overlapping
//! and in bounds; a stream never holds back more than the window and, when every match fits in the
//! window, gives exactly the bytes and counts of masking the whole input.
#![no_main]

use std::sync::{Arc, OnceLock};

use hoopgw_core::mask::{Counts, MaskConfig, Masker, StreamMasker, Style, BUILTIN_DETECTORS};
use libfuzzer_sys::fuzz_target;

mod chunks;

fn build(detectors: &[&str], patterns: &[(&str, &str, Style)]) -> Arc<Masker> {
    let styles = [Style::Last4, Style::Redact, Style::Hash];
    let cfg = MaskConfig {
        detectors: detectors
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), styles[i % styles.len()]))
            .collect(),
        patterns: patterns.iter().map(|(n, re, s)| (n.to_string(), re.to_string(), *s)).collect(),
        words: vec![("Project Falcon".into(), Style::Redact), ("été".into(), Style::Last4)],
        columns: vec![("*.card".into(), Style::Null)],
        hash_key: b"fuzzing key, 16+ bytes".to_vec(),
    };
    Arc::new(Masker::new(cfg).expect("valid config"))
}

/// Every detector (window 4096: the JWT), or the short ones only (a window of 42 bytes, so that
/// streams are cut by the window and not only at line breaks).
fn maskers() -> &'static [Arc<Masker>; 2] {
    static MASKERS: OnceLock<[Arc<Masker>; 2]> = OnceLock::new();
    MASKERS.get_or_init(|| {
        let all = build(
            BUILTIN_DETECTORS,
            &[
                ("emp", "EMP-[0-9]{6}", Style::Redact),
                ("ticket", "TCK-[A-Z]{3}-[0-9]{1,8}", Style::Hash),
                ("token", "tk_[a-z0-9]+", Style::Last4),
            ],
        );
        let short = build(
            &["credit_card", "us_ssn", "iban", "phone", "us_routing", "ipv4", "aws_access_key"],
            &[("emp", "EMP-[0-9]{6}", Style::Redact), ("ticket", "TCK-[A-Z]{3}-[0-9]{1,8}", Style::Hash)],
        );
        assert!(short.max_match_len() < 64, "{}", short.max_match_len());
        [all, short]
    })
}

fn trimmed(c: &Counts) -> Vec<u64> {
    let mut v = c.0.clone();
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

fuzz_target!(|data: &[u8]| {
    let m = &maskers()[usize::from(data.first().is_some_and(|b| b & 0x80 != 0))];
    let window = m.max_match_len();
    let input = data.get(1..).unwrap_or_default();

    let mut found = Vec::new();
    m.find(input, &mut found);
    let mut end = 0;
    for f in &found {
        assert!(f.start >= end && f.start < f.end && f.end <= input.len(), "{found:?}");
        assert!(usize::from(f.id) < m.columns_counter());
        end = f.end;
    }

    let mut counts = Counts::default();
    let whole = m.mask(input, &mut counts).unwrap_or_else(|| input.to_vec());
    if found.is_empty() {
        assert!(whole == input);
    }
    assert_eq!(counts.0.iter().sum::<u64>(), found.len() as u64);

    let mut stream = StreamMasker::new(Arc::clone(m));
    let mut out = Vec::new();
    for piece in chunks::chunks(data) {
        out.extend(stream.feed(&piece));
        assert!(stream.buffered() <= window, "{} > {window}", stream.buffered());
    }
    out.extend(stream.flush());
    assert_eq!(stream.buffered(), 0);
    if found.iter().all(|f| f.end - f.start <= window) {
        assert!(
            out == whole,
            "stream {:?}\nwhole  {:?}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&whole)
        );
        assert_eq!(trimmed(stream.counts()), trimmed(&counts));
    }
});
