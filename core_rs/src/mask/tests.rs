//! Tests of the engine behind the public API: configuration, styles, counts, columns, streams.

use std::sync::Arc;

use super::detect::Builtin;
use super::*;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

fn det(names: &[(&str, Style)]) -> Vec<(String, Style)> {
    names.iter().map(|(n, s)| (n.to_string(), *s)).collect()
}

fn masker(cfg: MaskConfig) -> Masker {
    Masker::new(cfg).unwrap()
}

fn card_masker(style: Style) -> Masker {
    masker(MaskConfig {
        detectors: det(&[("credit_card", style)]),
        hash_key: KEY.to_vec(),
        ..Default::default()
    })
}

fn mask_str(m: &Masker, s: &str) -> String {
    let mut counts = Counts::default();
    match m.mask(s.as_bytes(), &mut counts) {
        Some(v) => String::from_utf8(v).unwrap(),
        None => s.to_string(),
    }
}

fn config_error(cfg: MaskConfig) -> String {
    Masker::new(cfg).unwrap_err().0
}

#[test]
fn builtin_names_match_the_scanner() {
    let names: Vec<&str> = Builtin::ALL.iter().map(|b| b.name()).collect();
    assert_eq!(names, BUILTIN_DETECTORS);
    for (i, b) in Builtin::ALL.iter().enumerate() {
        assert_eq!(*b as usize, i);
        assert_eq!(Builtin::from_name(b.name()), Some(*b));
    }
}

#[test]
fn unknown_detector_is_an_error() {
    let msg = config_error(MaskConfig { detectors: det(&[("cc", Style::Redact)]), ..Default::default() });
    assert!(msg.starts_with("unknown detector \"cc\" (known: credit_card, us_ssn, iban,"), "{msg}");
    assert!(msg.ends_with("password_assignment)"), "{msg}");
}

#[test]
fn null_style_only_for_columns() {
    let msg = config_error(MaskConfig { detectors: det(&[("email", Style::Null)]), ..Default::default() });
    assert!(msg.contains("detector \"email\"") && msg.contains("null"), "{msg}");
    let msg = config_error(MaskConfig {
        patterns: vec![("emp".into(), "EMP-[0-9]+".into(), Style::Null)],
        ..Default::default()
    });
    assert!(msg.contains("pattern \"emp\""), "{msg}");
    let msg = config_error(MaskConfig { words: vec![("Falcon".into(), Style::Null)], ..Default::default() });
    assert!(msg.contains("word \"Falcon\""), "{msg}");
    let m = masker(MaskConfig { columns: vec![("*.ssn".into(), Style::Null)], ..Default::default() });
    assert_eq!(m.column_rule("public", "people", "ssn"), Some(Style::Null));
}

#[test]
fn bad_regex_names_the_pattern() {
    let msg = config_error(MaskConfig {
        patterns: vec![("ticket".into(), "TCK-[A-Z".into(), Style::Redact)],
        ..Default::default()
    });
    assert!(msg.starts_with("pattern \"ticket\": invalid regex \"TCK-[A-Z\""), "{msg}");
    assert!(msg.ends_with("unclosed character class (at byte 4)"), "{msg}");
}

#[test]
fn reserved_and_empty_pattern_names() {
    for name in ["", "email", "words", "columns"] {
        let err = Masker::new(MaskConfig {
            patterns: vec![(name.into(), "x".into(), Style::Redact)],
            ..Default::default()
        });
        assert!(err.is_err(), "{name:?}");
    }
    assert!(
        Masker::new(MaskConfig { words: vec![(" ".into(), Style::Redact)], ..Default::default() }).is_err()
    );
}

#[test]
fn hash_needs_a_key() {
    let msg = config_error(MaskConfig { detectors: det(&[("email", Style::Hash)]), ..Default::default() });
    assert!(msg.contains("at least 16 bytes"), "{msg}");
    let msg = config_error(MaskConfig {
        columns: vec![("t.c".into(), Style::Hash)],
        hash_key: vec![0; 15],
        ..Default::default()
    });
    assert!(msg.contains("(got 15)"), "{msg}");
    assert!(Masker::new(MaskConfig {
        columns: vec![("t.c".into(), Style::Hash)],
        hash_key: vec![0; 16],
        ..Default::default()
    })
    .is_ok());
    // no hash style: no key needed
    assert!(
        Masker::new(MaskConfig { detectors: det(&[("email", Style::Last4)]), ..Default::default() }).is_ok()
    );
}

#[test]
fn detector_twice() {
    let m = masker(MaskConfig {
        detectors: det(&[("email", Style::Redact), ("credit_card", Style::Last4), ("email", Style::Redact)]),
        ..Default::default()
    });
    assert_eq!(m.counter_names(), ["email", "credit_card", "columns"]);
    let msg = config_error(MaskConfig {
        detectors: det(&[("email", Style::Redact), ("email", Style::Last4)]),
        ..Default::default()
    });
    assert_eq!(msg, "detector \"email\" is configured with two styles (redact and last4)");
}

#[test]
fn bad_column_globs() {
    for glob in ["", "ssn", "a..b", ".a.b", "a.b.", "a.b.c.d"] {
        let msg =
            config_error(MaskConfig { columns: vec![(glob.into(), Style::Redact)], ..Default::default() });
        assert!(msg.contains(&format!("{glob:?}")), "{msg}");
    }
}

#[test]
fn counter_names_order() {
    let m = masker(MaskConfig {
        detectors: det(&[("us_ssn", Style::Redact), ("credit_card", Style::Redact)]),
        patterns: vec![
            ("emp".into(), "EMP-[0-9]{6}".into(), Style::Redact),
            ("ticket".into(), "TCK-[A-Z]{3}-[0-9]+".into(), Style::Redact),
            ("emp".into(), "EMPLOYEE-[0-9]{6}".into(), Style::Redact),
        ],
        words: vec![("Project Falcon".into(), Style::Redact), ("Osprey".into(), Style::Redact)],
        columns: vec![("*.x".into(), Style::Null)],
        ..Default::default()
    });
    assert_eq!(m.counter_names(), ["us_ssn", "credit_card", "emp", "ticket", "words", "columns"]);
    assert_eq!(m.columns_counter(), 5);
    assert!(m.has_detectors());
    assert!(m.has_columns());

    let empty = masker(MaskConfig::default());
    assert_eq!(empty.counter_names(), ["columns"]);
    assert_eq!(empty.columns_counter(), 0);
    assert!(!empty.has_detectors());
    assert!(!empty.has_columns());
    assert_eq!(empty.max_match_len(), 0);
    let mut counts = Counts::default();
    assert_eq!(empty.mask(b"4111 1111 1111 1111", &mut counts), None);
}

#[test]
fn max_match_len() {
    let m = card_masker(Style::Redact);
    assert_eq!(m.max_match_len(), Builtin::CreditCard.window());
    let all: Vec<(String, Style)> =
        BUILTIN_DETECTORS.iter().map(|n| (n.to_string(), Style::Redact)).collect();
    let m = masker(MaskConfig { detectors: all, ..Default::default() });
    assert_eq!(m.max_match_len(), Builtin::ALL.iter().map(|b| b.window()).max().unwrap());

    let pat = |re: &str| {
        masker(MaskConfig { patterns: vec![("p".into(), re.into(), Style::Redact)], ..Default::default() })
            .max_match_len()
    };
    assert_eq!(pat("EMP-[0-9]{6}"), 10);
    assert_eq!(pat("EMP-[0-9]+"), 256);
    assert_eq!(pat("x{5000}"), 4096);
    assert_eq!(pat("é{3}"), 6);
    let words =
        masker(MaskConfig { words: vec![("Project Falcon".into(), Style::Redact)], ..Default::default() });
    // case folding: `k` also matches the Kelvin sign (3 bytes)
    assert!(words.max_match_len() >= 14, "{}", words.max_match_len());
}

#[test]
fn redact_and_last4() {
    let m = card_masker(Style::Redact);
    assert_eq!(mask_str(&m, "card 4111 1111 1111 1111 ok"), "card ***** ok");
    let m = card_masker(Style::Last4);
    assert_eq!(mask_str(&m, "card 4111-1111-1111-1111 ok"), "card ****-****-****-1111 ok");
    assert_eq!(mask_str(&m, "4111111111111111"), "************1111");
    assert_eq!(mask_str(&m, "no card 4111 1111 1111 1112 here"), "no card 4111 1111 1111 1112 here");
}

#[test]
fn last4_of_short_and_odd_values() {
    let m = masker(MaskConfig::default());
    let last4 = |v: &[u8]| {
        let mut out = Vec::new();
        m.render_whole(v, Style::Last4, &mut out);
        out
    };
    // the last four letters and digits, and at most half of them: a short value is never shown whole
    assert_eq!(last4(b"4111-1111-1111-1111"), b"****-****-****-1111");
    assert_eq!(last4(b"abcdefgh"), b"****efgh");
    assert_eq!(last4(b"abcdefg"), b"****efg");
    assert_eq!(last4(b"abcde"), b"***de");
    assert_eq!(last4(b"abcd"), b"**cd");
    assert_eq!(last4(b"10.0.0.1"), b"**.*.0.1");
    assert_eq!(last4(b"a-b"), b"*-b");
    assert_eq!(last4(b"a"), b"*");
    assert_eq!(last4(b""), b"");
    assert_eq!(last4(b"--"), b"--");
    assert_eq!(last4("Ünïcödé-wörd".as_bytes()), "*******-wörd".as_bytes());
    assert_eq!(last4(b"\xff\xfeabcdefgh"), b"******efgh");
}

#[test]
fn redact_whole() {
    let m = masker(MaskConfig::default());
    let mut out = Vec::new();
    m.render_whole(b"anything at all", Style::Redact, &mut out);
    assert_eq!(out, b"*****");
    out.clear();
    m.render_whole(b"x", Style::Null, &mut out);
    assert_eq!(out, b"*****");
}

fn token(m: &Masker, s: &str) -> String {
    let out = mask_str(m, s);
    assert!(out.starts_with("tok_"), "{out}");
    assert_eq!(out.len(), 20, "{out}");
    assert!(out[4..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{out}");
    out
}

#[test]
fn hash_is_stable_across_separators() {
    let m = card_masker(Style::Hash);
    let a = token(&m, "4111 1111 1111 1111");
    let b = token(&m, "4111111111111111");
    let c = token(&m, "4111-1111-1111-1111");
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_ne!(a, token(&m, "5500 0000 0000 0004"));

    // the key matters
    let other = masker(MaskConfig {
        detectors: det(&[("credit_card", Style::Hash)]),
        hash_key: b"another key of 16+ bytes".to_vec(),
        ..Default::default()
    });
    assert_ne!(a, token(&other, "4111111111111111"));
}

#[test]
fn hash_is_hmac_of_name_nul_value() {
    let m = card_masker(Style::Hash);
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(KEY).unwrap();
    hmac::Mac::update(&mut mac, b"credit_card\x004111111111111111");
    let digest = hmac::Mac::finalize(mac).into_bytes();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    assert_eq!(token(&m, "4111 1111 1111 1111"), format!("tok_{hex}"));

    // columns: the value as is, under the name "columns"
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(KEY).unwrap();
    hmac::Mac::update(&mut mac, b"columns\x00Jane Doe");
    let digest = hmac::Mac::finalize(mac).into_bytes();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let mut out = Vec::new();
    m.render_whole(b"Jane Doe", Style::Hash, &mut out);
    assert_eq!(String::from_utf8(out).unwrap(), format!("tok_{hex}"));
}

#[test]
fn hash_words_ignore_case_patterns_do_not() {
    let m = masker(MaskConfig {
        patterns: vec![("code".into(), "(?i)code-[a-z]+".into(), Style::Hash)],
        words: vec![("Project Falcon".into(), Style::Hash)],
        hash_key: KEY.to_vec(),
        ..Default::default()
    });
    assert_eq!(token(&m, "project falcon"), token(&m, "PROJECT FALCON"));
    assert_ne!(token(&m, "code-abc"), token(&m, "CODE-ABC"));
}

#[test]
fn counts_every_masked_value() {
    let m = masker(MaskConfig {
        detectors: det(&[("credit_card", Style::Redact), ("us_ssn", Style::Last4)]),
        patterns: vec![("emp".into(), "EMP-[0-9]{6}".into(), Style::Redact)],
        words: vec![("Falcon".into(), Style::Redact)],
        ..Default::default()
    });
    let mut counts = Counts::default();
    let out = m
        .mask(
            b"4111111111111111 and 123-45-6789, EMP-000123 EMP-000124 falcon FALCON Falcons 078-05-1120",
            &mut counts,
        )
        .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "***** and ***-**-6789, ***** ***** ***** ***** Falcons ***-**-1120"
    );
    let names = m.counter_names();
    assert_eq!(counts.named(names), vec![("credit_card", 1), ("us_ssn", 2), ("emp", 2), ("words", 2)]);

    // accumulates
    let _ = m.mask(b"EMP-999999", &mut counts);
    assert_eq!(counts.0.get(2), Some(&3));
    // nothing matched: no change, no output
    let mut out = b"prefix".to_vec();
    assert!(!m.mask_into(b"nothing here", &mut counts, &mut out));
    assert_eq!(out, b"prefix");
    assert!(m.mask_into(b" EMP-123456", &mut counts, &mut out));
    assert_eq!(out, b"prefix *****");
}

#[test]
fn find_sorted_non_overlapping() {
    let m = masker(MaskConfig {
        detectors: det(&[("credit_card", Style::Redact)]),
        patterns: vec![
            ("long".into(), "4111 1111 1111 1111 1111".into(), Style::Redact),
            ("tail".into(), "1111 ok".into(), Style::Redact),
            ("pin".into(), "PIN [0-9]{4}".into(), Style::Redact),
        ],
        words: vec![("secret".into(), Style::Redact)],
        ..Default::default()
    });
    let data = b"PIN 1234, 4111 1111 1111 1111 ok secret";
    let mut found = Vec::new();
    m.find(data, &mut found);
    let names = m.counter_names();
    let got: Vec<(&str, usize, usize)> =
        found.iter().map(|f| (names[usize::from(f.id)].as_str(), f.start, f.end)).collect();
    // the card (leftmost at 10) and "1111 ok" that overlaps it merge, attributed to the card; the
    // pattern "long" does not match (no fifth group)
    assert_eq!(got, vec![("pin", 0, 8), ("credit_card", 10, 32), ("words", 33, 39)]);

    // same start: the longer one wins
    let m2 = masker(MaskConfig {
        detectors: det(&[("credit_card", Style::Redact)]),
        patterns: vec![("longer".into(), "4111111111111111-x".into(), Style::Redact)],
        ..Default::default()
    });
    found.clear();
    m2.find(b"4111111111111111-x", &mut found);
    assert_eq!(found, vec![Match { start: 0, end: 18, id: 1 }]);
}

#[test]
fn overlapping_matches_are_merged() {
    let m = masker(MaskConfig {
        detectors: det(&[("phone", Style::Last4), ("credit_card", Style::Redact), ("us_ssn", Style::Redact)]),
        patterns: vec![
            ("ab".into(), "alpha beta".into(), Style::Redact),
            ("bg".into(), "beta gamma".into(), Style::Redact),
            ("gd".into(), "gamma delta".into(), Style::Hash),
            ("ref".into(), "REF-[0-9]{3}".into(), Style::Redact),
        ],
        words: vec![("1111 ok".into(), Style::Redact)],
        hash_key: KEY.to_vec(),
        ..Default::default()
    });
    // built-in candidates: the union, rendered with the leftmost detector's style, counted once
    let mut counts = Counts::default();
    let out = m.mask(b"+1 415 555 2671 4111 1111 1111 1111.", &mut counts).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "+* *** *** **** **** **** **** 1111.");
    assert_eq!(counts.named(m.counter_names()), vec![("phone", 1)]);
    // ... and with a custom match overlapping it (the word "1111 ok")
    let out = m.mask(b"+1 415 555 2671 4111 1111 1111 1111 ok", &mut counts).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), "+* *** *** **** **** **** **** **11 ok");
    assert_eq!(mask_str(&m, "3782 822463 10005 4002 1111 1111 1113"), "*****");
    // custom patterns overlapping each other (the regex alone reports only the first)
    assert_eq!(mask_str(&m, "alpha beta gamma delta epsilon"), "***** epsilon");
    assert_eq!(mask_str(&m, "beta gamma delta, alpha beta"), "***** *****".replace(' ', ", "));
    let mut found = Vec::new();
    m.find(b"x alpha beta gamma delta y", &mut found);
    assert_eq!(found, vec![Match { start: 2, end: 24, id: 3 }]);
    // a custom pattern overlapping a built-in match
    found.clear();
    m.find(b"card 4111 1111 1111 1111 ok", &mut found);
    assert_eq!(found, vec![Match { start: 5, end: 27, id: 1 }]);
    found.clear();
    m.find(b"REF-123-45-6789", &mut found);
    assert_eq!(found, vec![Match { start: 0, end: 15, id: 6 }]);
}

#[test]
fn overlap_search_stays_linear() {
    // every word starts a match that runs to the end: searching each one again would be quadratic
    let m = masker(MaskConfig {
        patterns: vec![
            ("b".into(), "a b".into(), Style::Redact),
            ("run".into(), "a( a)*".into(), Style::Redact),
        ],
        ..Default::default()
    });
    let data = "a ".repeat(200_000);
    let t = std::time::Instant::now();
    assert_eq!(mask_str(&m, &data), "***** ");
    assert!(t.elapsed().as_secs() < 10);
    // overlapping matches are still merged while the budget lasts
    assert_eq!(mask_str(&m, "x a a b y"), "x ***** y");
}

#[test]
fn secrets_are_never_partly_shown() {
    let m = masker(MaskConfig {
        detectors: BUILTIN_DETECTORS.iter().map(|n| (n.to_string(), Style::Last4)).collect(),
        ..Default::default()
    });
    assert_eq!(mask_str(&m, "password=hunter2x"), "password=*****");
    assert_eq!(mask_str(&m, "PGPASSWORD=hunter2x"), "PGPASSWORD=*****");
    assert_eq!(mask_str(&m, "key AKIAIOSFODNN7EXAMPLE"), "key *****");
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl";
    assert_eq!(mask_str(&m, &format!("Bearer {jwt}")), "Bearer *****");
    // the others keep their last four (at most half)
    assert_eq!(mask_str(&m, "4111 1111 1111 1111"), "**** **** **** 1111");
    assert_eq!(mask_str(&m, "10.0.0.1"), "**.*.0.1");
    // hash stays hash
    let m = masker(MaskConfig {
        detectors: det(&[("password_assignment", Style::Hash), ("jwt", Style::Hash)]),
        hash_key: KEY.to_vec(),
        ..Default::default()
    });
    let out = mask_str(&m, "password=hunter2");
    assert!(out.starts_with("password=tok_") && out.len() == "password=".len() + 20, "{out}");
}

#[test]
fn long_secrets_are_masked_whole() {
    let m = masker(MaskConfig {
        detectors: det(&[("password_assignment", Style::Redact), ("jwt", Style::Redact)]),
        ..Default::default()
    });
    let value = "a".repeat(300);
    assert_eq!(mask_str(&m, &format!("token={value} next")), "token=***** next");
    let long = format!("AWS_SESSION_TOKEN=FwoGZXIvYXdzE{}\n", "A1b2C3d4".repeat(60));
    assert_eq!(mask_str(&m, &long), "AWS_SESSION_TOKEN=*****\n");
    let jwt = format!("eyJhbGciOiJSUzI1NiJ9.eyJ{}.{}", "g".repeat(6000), "s".repeat(400));
    assert_eq!(mask_str(&m, &format!("Bearer {jwt} x")), "Bearer ***** x");
    // a stream holds back only its window: a longer value split across reads may be cut
    let arc = Arc::new(m);
    let data = format!("token={value} next\n");
    let (out, _, max_buffered) = streamed(&arc, data.as_bytes(), &[]);
    assert_eq!(String::from_utf8(out).unwrap(), "token=***** next\n");
    assert!(max_buffered <= arc.max_match_len());
}

#[test]
fn words_are_whole_and_case_insensitive() {
    let m = masker(MaskConfig {
        words: vec![
            ("Project Falcon".into(), Style::Redact),
            ("C++".into(), Style::Redact),
            ("café".into(), Style::Redact),
        ],
        ..Default::default()
    });
    assert_eq!(mask_str(&m, "the PROJECT falcon plan"), "the ***** plan");
    assert_eq!(mask_str(&m, "Project Falconry"), "Project Falconry");
    assert_eq!(mask_str(&m, "xProject Falcon"), "xProject Falcon");
    assert_eq!(mask_str(&m, "_Project Falcon_"), "_Project Falcon_");
    assert_eq!(mask_str(&m, "(project falcon)"), "(*****)");
    assert_eq!(mask_str(&m, "we use c++ here, C++x too"), "we use ***** here, C++x too");
    assert_eq!(mask_str(&m, "un CAFÉ noir, cafés"), "un ***** noir, cafés");
}

#[test]
fn patterns_need_boundaries() {
    let m = masker(MaskConfig {
        patterns: vec![
            ("emp".into(), "EMP-[0-9]{6}".into(), Style::Redact),
            ("ticket".into(), "TCK-[A-Z]{3}-[0-9]+".into(), Style::Last4),
            ("money".into(), r"\$[0-9]+".into(), Style::Redact),
            ("alt".into(), "ab|abc".into(), Style::Redact),
        ],
        ..Default::default()
    });
    assert_eq!(mask_str(&m, "EMP-123456 TCK-ABC-42 for EMP-654321"), "***** ***-*BC-42 for *****");
    for near in ["EMP-12345", "EMP-1234567", "xEMP-123456", "EMP-123456x", "9EMP-123456", "TCK-ABC-42x"] {
        assert_eq!(mask_str(&m, near), near);
    }
    assert_eq!(mask_str(&m, "(EMP-123456)"), "(*****)");
    assert_eq!(mask_str(&m, "-EMP-123456-"), "-*****-");
    assert_eq!(mask_str(&m, "pay $100."), "pay *****.");
    assert_eq!(mask_str(&m, "pay x$100."), "pay x$100.");
    // the boundary picks the alternative that ends on one
    assert_eq!(mask_str(&m, "abc ab"), "***** *****");
}

#[test]
fn patterns_that_match_empty_are_refused() {
    for re in ["x*", "(foo)?", "", "\\b"] {
        let msg = config_error(MaskConfig {
            patterns: vec![("maybe".into(), re.into(), Style::Redact)],
            ..Default::default()
        });
        assert_eq!(msg, format!("pattern \"maybe\": regex {re:?} can match the empty string"));
    }
}

#[test]
fn non_ascii_letters_are_letters() {
    let m = masker(MaskConfig {
        patterns: vec![("emp".into(), "EMP-[0-9]{6}".into(), Style::Redact)],
        words: vec![("Project Falcon".into(), Style::Redact), ("été".into(), Style::Redact)],
        ..Default::default()
    });
    for text in ["éProject Falcon", "Project Falconé", "ÜberProject Falcon", "EMP-123456ß", "中EMP-123456"]
    {
        assert_eq!(mask_str(&m, text), text);
    }
    assert_eq!(mask_str(&m, "«Project Falcon»"), "«*****»");
    assert_eq!(mask_str(&m, "l'été, ÉTÉ; étés"), "l'*****, *****; étés");
    // a rejected match does not hide the next one
    assert_eq!(mask_str(&m, "éEMP-123456 EMP-654321"), "éEMP-123456 *****");
    assert_eq!(mask_str(&m, "Project Falconé Project Falcon"), "Project Falconé *****");
}

#[test]
fn patterns_on_binary_data() {
    let m = masker(MaskConfig {
        patterns: vec![("emp".into(), "EMP-[0-9]{6}".into(), Style::Redact)],
        ..Default::default()
    });
    let mut counts = Counts::default();
    let out = m.mask(b"\xff\x00EMP-123456\xfe", &mut counts).unwrap();
    assert_eq!(out, b"\xff\x00*****\xfe");
    assert_eq!(m.mask(b"\xffEMP-123456\xe9", &mut counts).unwrap(), b"\xff*****\xe9");
}

#[test]
fn column_and_label_rules() {
    let m = masker(MaskConfig {
        columns: vec![
            ("*.account_number".into(), Style::Last4),
            ("public.customers.full_name".into(), Style::Null),
            ("sales.*.full_name".into(), Style::Redact),
            ("cust?mers.e*".into(), Style::Hash),
        ],
        hash_key: KEY.to_vec(),
        ..Default::default()
    });
    assert_eq!(m.column_rule("public", "accounts", "account_number"), Some(Style::Last4));
    assert_eq!(m.column_rule("x", "y", "account_number"), Some(Style::Last4));
    assert_eq!(m.column_rule("public", "customers", "full_name"), Some(Style::Null));
    assert_eq!(m.column_rule("sales", "customers", "full_name"), Some(Style::Redact));
    assert_eq!(m.column_rule("other", "customers", "full_name"), None);
    assert_eq!(m.column_rule("public", "customers", "email"), Some(Style::Hash));
    assert_eq!(m.column_rule("public", "Customers", "email"), None);
    assert_eq!(m.column_rule("public", "customers", "phone"), None);

    assert_eq!(m.label_rule("account_number"), Some(Style::Last4));
    assert_eq!(m.label_rule("full_name"), Some(Style::Null), "first matching rule");
    assert_eq!(m.label_rule("email"), Some(Style::Hash));
    assert_eq!(m.label_rule("phone"), None);
}

#[test]
fn masker_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Masker>();
    check::<StreamMasker>();
}

#[test]
fn nested_use_of_scratch_space() {
    // a Masker used while another one is scanning on the same thread (no shared state corruption)
    let m = card_masker(Style::Redact);
    let mut counts = Counts::default();
    let mut found = Vec::new();
    m.find(b"4111111111111111 x 4111111111111111", &mut found);
    let out = m.mask(b"a 4111111111111111", &mut counts).unwrap();
    assert_eq!(out, b"a *****");
    assert_eq!(found.len(), 2);
}

// ------------------------------------------------------------------------------------------------
// Streams
// ------------------------------------------------------------------------------------------------

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn stream_masker() -> Arc<Masker> {
    Arc::new(masker(MaskConfig {
        detectors: BUILTIN_DETECTORS.iter().map(|n| (n.to_string(), Style::Last4)).collect(),
        patterns: vec![
            ("emp".into(), "EMP-[0-9]{6}".into(), Style::Redact),
            ("ticket".into(), "TCK-[A-Z]{3}-[0-9]{1,8}".into(), Style::Hash),
        ],
        words: vec![("Project Falcon".into(), Style::Redact)],
        hash_key: KEY.to_vec(),
        ..Default::default()
    }))
}

const FRAGMENTS: &[&str] = &[
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "4111111111111111",
    "5500 0000 0000 0004",
    "123-45-6789",
    "078-05-1120",
    "john.doe@example.com",
    "a@b.co",
    "+1 415 555 2671",
    "(415) 555-2671",
    "192.168.1.20",
    "AKIAIOSFODNN7EXAMPLE",
    "GB82 WEST 1234 5698 7654 32",
    "password=hunter2",
    "api_key: \"abc123def\"",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
    "EMP-123456",
    "TCK-ABC-42",
    "project falcon",
    "1234567890123456789012345",
    " ",
    " ",
    "\n",
    "\r\n",
    "-",
    ", ",
    ":",
    "=",
    "x",
    "id",
    "\u{e9}",
    "\u{ff}",
    "0",
    "42",
];

fn random_input(rng: &mut Rng) -> Vec<u8> {
    let n = rng.below(40);
    let mut data = Vec::new();
    for _ in 0..n {
        if rng.below(10) == 0 {
            let k = rng.below(6);
            for _ in 0..k {
                data.push(rng.below(256) as u8);
            }
        } else {
            data.extend_from_slice(FRAGMENTS[rng.below(FRAGMENTS.len())].as_bytes());
        }
    }
    data
}

fn whole(m: &Masker, data: &[u8]) -> (Vec<u8>, Counts) {
    let mut counts = Counts::default();
    let out = m.mask(data, &mut counts).unwrap_or_else(|| data.to_vec());
    (out, counts)
}

fn streamed(m: &Arc<Masker>, data: &[u8], cuts: &[usize]) -> (Vec<u8>, Counts, usize) {
    let mut s = StreamMasker::new(Arc::clone(m));
    let mut out = Vec::new();
    let mut prev = 0;
    let mut max_buffered = 0;
    for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
        out.extend(s.feed(&data[prev..cut]));
        max_buffered = max_buffered.max(s.buffered());
        prev = cut;
    }
    out.extend(s.flush());
    assert_eq!(s.buffered(), 0);
    (out, s.counts().clone(), max_buffered)
}

fn trimmed(c: &Counts) -> Vec<u64> {
    let mut v = c.0.clone();
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// The detectors with short matches only: a window of 42 bytes, so that streams are cut by the
/// window and not only at line breaks.
fn short_window_masker() -> Arc<Masker> {
    let detectors = ["credit_card", "us_ssn", "iban", "phone", "us_routing", "ipv4", "aws_access_key"];
    Arc::new(masker(MaskConfig {
        detectors: detectors.iter().map(|n| (n.to_string(), Style::Hash)).collect(),
        patterns: vec![("emp".into(), "EMP-[0-9]{6}".into(), Style::Last4)],
        words: vec![("Project Falcon".into(), Style::Last4)],
        hash_key: KEY.to_vec(),
        ..Default::default()
    }))
}

#[test]
fn stream_equals_whole_for_any_split() {
    stream_equals_whole(&stream_masker(), 1, 3000);
}

#[test]
fn stream_equals_whole_for_any_split_short_window() {
    let m = short_window_masker();
    assert!(m.max_match_len() < 64);
    stream_equals_whole(&m, 2, 1500);
}

fn stream_equals_whole(m: &Arc<Masker>, seed: u64, rounds: usize) {
    let window = m.max_match_len();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed);
    let mut with_matches = 0;
    for _ in 0..rounds {
        let data = random_input(&mut rng);
        let (expect, expect_counts) = whole(m, &data);
        let mut found = Vec::new();
        m.find(&data, &mut found);
        assert!(found.iter().all(|f| f.end - f.start <= window));
        with_matches += usize::from(!found.is_empty());
        for _ in 0..4 {
            let mut cuts: Vec<usize> = (0..rng.below(12)).map(|_| rng.below(data.len() + 1)).collect();
            if rng.below(4) == 0 {
                cuts = (1..data.len()).collect(); // byte by byte
            }
            cuts.sort_unstable();
            let (got, counts, max_buffered) = streamed(m, &data, &cuts);
            assert!(max_buffered <= window);
            assert!(
                got == expect,
                "input {:?} cuts {cuts:?}\nstream {:?}\nwhole  {:?}",
                String::from_utf8_lossy(&data),
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&expect)
            );
            assert_eq!(trimmed(&counts), trimmed(&expect_counts));
        }
    }
    assert!(with_matches > rounds / 2, "{with_matches} of {rounds} inputs have matches");
}

#[test]
fn stream_holds_back_at_most_the_window() {
    let m = stream_masker();
    let window = m.max_match_len();
    let mut s = StreamMasker::new(Arc::clone(&m));
    let line = "no newline here, just text and 4111 1111 1111 1111 and more text ".repeat(40);
    let mut out = Vec::new();
    for chunk in line.as_bytes().chunks(7) {
        out.extend(s.feed(chunk));
        assert!(s.buffered() <= window, "{} > {window}", s.buffered());
    }
    out.extend(s.flush());
    assert_eq!(out, whole(&m, line.as_bytes()).0);
}

#[test]
fn stream_emits_complete_lines_at_once() {
    let m = stream_masker();
    let mut s = StreamMasker::new(Arc::clone(&m));
    assert_eq!(s.feed(b"card 4111 1111 1111 1111\nuser@host:~$ "), b"card **** **** **** 1111\n".to_vec());
    assert_eq!(s.buffered(), "user@host:~$ ".len());
    assert_eq!(s.flush(), b"user@host:~$ ".to_vec());
    assert_eq!(s.buffered(), 0);
    assert_eq!(s.flush(), Vec::<u8>::new());
    // a value split across reads
    assert_eq!(s.feed(b"next 4111 1111 "), Vec::<u8>::new());
    assert_eq!(s.feed(b"1111 1111 ok\n"), b"next **** **** **** 1111 ok\n".to_vec());
    assert_eq!(s.counts().named(m.counter_names()), vec![("credit_card", 2)]);
}

#[test]
fn stream_holds_a_match_at_the_end() {
    let m = Arc::new(card_masker(Style::Redact));
    let mut s = StreamMasker::new(Arc::clone(&m));
    // a complete card could still grow into a longer digit run: held back even after a newline
    assert_eq!(s.feed(b"a\n4111111111111111"), b"a\n".to_vec());
    assert_eq!(s.feed(b"1111"), Vec::<u8>::new());
    assert_eq!(s.flush(), b"41111111111111111111".to_vec(), "20 digits: no card");
}

#[test]
fn stream_without_detectors_passes_through() {
    let m = Arc::new(masker(MaskConfig { columns: vec![("t.c".into(), Style::Null)], ..Default::default() }));
    let mut s = StreamMasker::new(m);
    assert_eq!(s.feed(b"4111 1111 1111 1111"), b"4111 1111 1111 1111".to_vec());
    assert_eq!(s.buffered(), 0);
    assert_eq!(s.flush(), Vec::<u8>::new());
}

#[test]
fn stream_long_input_and_big_reads() {
    let m = stream_masker();
    let mut rng = Rng(7);
    let mut data = Vec::new();
    while data.len() < 200_000 {
        data.extend(random_input(&mut rng));
    }
    let (expect, _) = whole(&m, &data);
    let mut cuts = Vec::new();
    let mut at = 0;
    while at < data.len() {
        at += 1 + rng.below(20_000);
        cuts.push(at.min(data.len()));
    }
    let (got, _, _) = streamed(&m, &data, &cuts);
    assert!(got == expect);
}
