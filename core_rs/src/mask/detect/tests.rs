#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use super::scan::{run_blocks, run_scalar};
use super::validate::{iban_len, iban_mod97};
use super::*;

/// (detector name, matched text) of everything found with all detectors on.
fn find(s: &str) -> Vec<(&'static str, String)> {
    find_with(s, Enabled::all())
}

fn find_with(s: &str, enabled: Enabled) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    scan(s.as_bytes(), enabled, &mut out);
    check_invariants(s.as_bytes(), enabled, 0, &out);
    out.iter().map(|f| (f.detector.name(), s[f.start..f.end].to_string())).collect()
}

fn one(name: &'static str, text: &str) -> Vec<(&'static str, String)> {
    vec![(name, text.to_string())]
}

/// Sorted, non-overlapping, non-empty, within bounds, only enabled detectors.
fn check_invariants(data: &[u8], enabled: Enabled, base: usize, out: &[Found]) {
    let mut last_end = 0;
    for (k, f) in out[base..].iter().enumerate() {
        assert!(f.start < f.end, "empty match {f:?}");
        assert!(f.end <= data.len(), "out of bounds {f:?}");
        assert!(k == 0 || f.start >= last_end, "overlap or unsorted at {f:?} in {out:?}");
        assert!(enabled.contains(f.detector), "disabled detector {f:?}");
        last_end = f.end;
    }
}

// ----- interface ----------------------------------------------------------------------------

#[test]
fn names_match_the_public_list() {
    let names: Vec<&str> = Builtin::ALL.iter().map(|b| b.name()).collect();
    assert_eq!(names, crate::mask::BUILTIN_DETECTORS);
    for (i, b) in Builtin::ALL.iter().enumerate() {
        assert_eq!(*b as usize, i);
        assert_eq!(Builtin::from_name(b.name()), Some(*b));
    }
    assert_eq!(Builtin::from_name("cc"), None);
    assert_eq!(Builtin::from_name("Email"), None);
}

#[test]
fn enabled_sets() {
    let all = Enabled::all();
    assert_eq!(all.0, 0x3ff);
    assert!(Builtin::ALL.iter().all(|b| all.contains(*b)));
    assert!(Enabled::default().is_empty());
    assert!(Enabled(0x8000).is_empty());
    let e = Enabled::default().with(Builtin::Email).with(Builtin::Jwt);
    assert!(e.contains(Builtin::Email) && e.contains(Builtin::Jwt) && !e.contains(Builtin::Iban));
    assert!(!e.is_empty());
}

#[test]
fn numeric_secret_and_window() {
    let numeric: Vec<Builtin> = Builtin::ALL.iter().copied().filter(|b| b.numeric()).collect();
    assert_eq!(numeric, [Builtin::CreditCard, Builtin::UsSsn, Builtin::Phone, Builtin::UsRouting]);
    let secret: Vec<Builtin> = Builtin::ALL.iter().copied().filter(|b| b.secret()).collect();
    assert_eq!(secret, [Builtin::AwsAccessKey, Builtin::Jwt, Builtin::PasswordAssignment]);
    // a stream holds back less than a whole buffer reports for JWTs and password values
    assert_eq!(Builtin::Jwt.window(), 4096);
    assert_eq!(Builtin::PasswordAssignment.window(), 256);
    const { assert!(JWT_MAX >= 64 * 1024 && PASSWORD_VALUE_MAX >= 64 * 1024) };
    assert_eq!(Builtin::Email.window(), 254);
    assert!(Builtin::ALL.iter().all(|b| b.window() > 0));
}

#[test]
fn appends_and_keeps_what_was_there() {
    let mut out = vec![Found { start: 100, end: 200, detector: Builtin::Jwt }];
    scan(b"4111111111111111 and 021000021", Enabled::all(), &mut out);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0], Found { start: 100, end: 200, detector: Builtin::Jwt });
    assert_eq!(out[1], Found { start: 0, end: 16, detector: Builtin::CreditCard });
    assert_eq!(out[2], Found { start: 21, end: 30, detector: Builtin::UsRouting });
}

#[test]
fn nothing_enabled_or_empty_input() {
    let mut out = Vec::new();
    scan(b"4111111111111111", Enabled::default(), &mut out);
    scan(b"", Enabled::all(), &mut out);
    assert!(out.is_empty());
}

#[test]
fn only_enabled_detectors_report() {
    let s = "4111111111111111 123-45-6789 a@b.example.com 10.0.0.1 AKIAIOSFODNN7EXAMPLE pwd=x";
    assert_eq!(find_with(s, Enabled::default().with(Builtin::Ipv4)), one("ipv4", "10.0.0.1"));
    assert_eq!(find_with(s, Enabled::default().with(Builtin::UsSsn)), one("us_ssn", "123-45-6789"));
    assert_eq!(find(s).len(), 6);
}

// ----- credit_card ----------------------------------------------------------------------------

#[test]
fn card_positive() {
    assert_eq!(find("4111111111111111"), one("credit_card", "4111111111111111"));
    assert_eq!(find("card: 4111 1111 1111 1111, exp"), one("credit_card", "4111 1111 1111 1111"));
    assert_eq!(find("4111-1111-1111-1111"), one("credit_card", "4111-1111-1111-1111"));
    assert_eq!(find("amex 3782-822463-10005."), one("credit_card", "3782-822463-10005"));
    assert_eq!(find("378282246310005"), one("credit_card", "378282246310005"));
    assert_eq!(find("1234567890128"), one("credit_card", "1234567890128")); // 13 digits
    assert_eq!(find("4111111111111111128"), one("credit_card", "4111111111111111128")); // 19
    assert_eq!(find("4111 1111 1111 1111 128"), one("credit_card", "4111 1111 1111 1111 128"));
    // numbers need digit boundaries only
    assert_eq!(find("id=x4111111111111111y"), one("credit_card", "4111111111111111"));
}

#[test]
fn card_windows_of_a_longer_token() {
    // a short number before the card
    assert_eq!(find("Order 12 4111 1111 1111 1111"), one("credit_card", "4111 1111 1111 1111"));
    // the whole 19-digit token fails Luhn; the card before the CVV does not
    assert_eq!(find("4111 1111 1111 1111 123"), one("credit_card", "4111 1111 1111 1111"));
    // more than 19 digits in the token
    assert_eq!(find("ref 4111 1111 1111 1111 9999 9999"), one("credit_card", "4111 1111 1111 1111"));
    assert_eq!(find("1000 2000 4111 1111 1111 1111"), one("credit_card", "4111 1111 1111 1111"));
    // the separator changes: a new token
    assert_eq!(find("2024-03-01 4111 1111 1111 1111"), one("credit_card", "4111 1111 1111 1111"));
}

#[test]
fn card_negative() {
    assert_eq!(find("4111111111111112"), []); // Luhn
    assert_eq!(find("4111 1111 1111 1112"), []);
    assert_eq!(find("1234567890123456789012345"), []); // a 25-digit id
    assert_eq!(find("41111111111111110000000000"), []); // a card inside a longer run
    assert_eq!(find("123456789012"), []); // 12 digits
    assert_eq!(find("41111111111111111111"), []); // 20 digits
                                                  // mixed or doubled separators are no card
    assert_eq!(find("4111 1111-1111 1111"), []);
    assert_eq!(find("4111  1111 1111 1111"), []);
    // groups of 8 digits are not card groups
    assert_eq!(find("41111111 11111111"), []);
    // dots do not separate cards
    assert_eq!(find("4111.1111.1111.1111"), []);
}

#[test]
fn amounts_are_not_cards() {
    // decision: a run that is part of a decimal number is an amount
    assert_eq!(find("total 4111111111111111.25 EUR"), []);
    assert_eq!(find("1234567890128.45"), []);
    assert_eq!(find("0.4111111111111111"), []);
    // a full stop ends a sentence, it does not make a decimal
    assert_eq!(find("card 4111111111111111."), one("credit_card", "4111111111111111"));
    assert_eq!(find("021000021.00"), []); // routing number as an amount
}

// ----- us_ssn ---------------------------------------------------------------------------------

#[test]
fn ssn() {
    assert_eq!(find("SSN 123-45-6789."), one("us_ssn", "123-45-6789"));
    assert_eq!(find("ssn: 123 45 6789"), one("us_ssn", "123 45 6789"));
    assert_eq!(find("(123-45-6789)"), one("us_ssn", "123-45-6789"));
    for bad in ["000-45-6789", "666-45-6789", "900-45-6789", "999-45-6789", "123-00-6789", "123-45-0000"] {
        assert_eq!(find(bad), [], "{bad}");
    }
    assert_eq!(find("123-45 6789"), []); // mixed separators
    assert_eq!(find("123-45-67890"), []);
    assert_eq!(find("1123-45-6789"), []);
    assert_eq!(find("123456789x"), []); // 9 digits: routing checksum fails, no SSN without separators
    assert_eq!(find("123.45.6789"), []);
}

// ----- iban -----------------------------------------------------------------------------------

#[test]
fn iban_positive() {
    assert_eq!(find("DE89370400440532013000"), one("iban", "DE89370400440532013000"));
    assert_eq!(find("to DE89 3704 0044 0532 0130 00."), one("iban", "DE89 3704 0044 0532 0130 00"));
    assert_eq!(find("GB82 WEST 1234 5698 7654 32"), one("iban", "GB82 WEST 1234 5698 7654 32"));
    assert_eq!(find("GB82WEST12345698765432"), one("iban", "GB82WEST12345698765432"));
    assert_eq!(find("NO9386011117947"), one("iban", "NO9386011117947"));
    assert_eq!(find("iban=(FR1420041010050500013M02606)"), one("iban", "FR1420041010050500013M02606"));
    // a group of four after a full-length IBAN is another token
    assert_eq!(find("BE68 5390 0754 7034 99"), one("iban", "BE68 5390 0754 7034"));
}

#[test]
fn iban_negative() {
    assert_eq!(find("DE89370400440532013001"), []); // checksum
    assert_eq!(find("DE8937040044053201300"), []); // too short for DE
    assert_eq!(find("DE893704004405320130000"), []); // too long
    assert_eq!(find("de89370400440532013000"), []); // lowercase
    assert_eq!(find("XDE89370400440532013000"), []); // letter before
    assert_eq!(find("1DE89370400440532013000"), []); // digit before
    assert_eq!(find("DE89370400440532013000x"), []); // letter after
    assert_eq!(find("DE89 3704 0044 0532 0130 0"), []); // short
    assert_eq!(find("DE89 37040044 0532 0130 00"), []); // groups of four only
    assert_eq!(find("DE89  3704 0044 0532 0130 00"), []); // single spaces only
    assert_eq!(find("US12345678901234567890"), []); // no IBAN country
}

#[test]
fn iban_every_country_of_the_table() {
    let mut n = 0;
    for a in b'A'..=b'Z' {
        for b in b'A'..=b'Z' {
            let Some(len) = iban_len(a, b) else { continue };
            n += 1;
            assert!((15..=34).contains(&len));
            // a valid IBAN of that length: BBAN of digits, check digits computed
            let bban: String = (0..len - 4).map(|i| char::from(b'0' + (i * 7 % 10) as u8)).collect();
            let mut r = 0u32;
            for c in bban.bytes().chain([a, b, b'0', b'0']) {
                r = match c {
                    b'0'..=b'9' => (r * 10 + u32::from(c - b'0')) % 97,
                    _ => (r * 100 + u32::from(c - b'A') + 10) % 97,
                };
            }
            let iban = format!("{}{}{:02}{bban}", a as char, b as char, 98 - r);
            assert!(iban_mod97(iban.as_bytes()), "{iban}");
            let got = find_with(&format!("x {iban} y"), Enabled::default().with(Builtin::Iban));
            assert_eq!(got, one("iban", &iban));
            let spaced: Vec<String> =
                iban.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into()).collect();
            let spaced = spaced.join(" ");
            let got = find_with(&format!("{spaced}."), Enabled::default().with(Builtin::Iban));
            assert_eq!(got, one("iban", &spaced));
            // one character less or more: no IBAN
            let short = &iban[..iban.len() - 1];
            assert_eq!(find_with(short, Enabled::default().with(Builtin::Iban)), []);
        }
    }
    assert!(n >= 80, "{n} countries");
}

// ----- email ----------------------------------------------------------------------------------

#[test]
fn email_positive() {
    assert_eq!(find("mail john.doe+x@example.co.uk now"), one("email", "john.doe+x@example.co.uk"));
    assert_eq!(find("<a_b%c-d@mail-server.example.org>"), one("email", "a_b%c-d@mail-server.example.org"));
    assert_eq!(find("write to john@example.com."), one("email", "john@example.com"));
    assert_eq!(find("x,john@example.com,y"), one("email", "john@example.com"));
    let local = "a".repeat(64);
    let addr = format!("{local}@example.com");
    assert_eq!(find(&format!(" {addr} ")), one("email", &addr));
}

#[test]
fn email_negative() {
    assert_eq!(find("a@b"), []);
    assert_eq!(find("user@localhost"), []); // no dot
    assert_eq!(find("user@host.c"), []); // TLD of one letter
    assert_eq!(find("user@host.123"), []); // numeric TLD
    assert_eq!(find("user@host.c0m"), []);
    assert_eq!(find("@example.com"), []);
    assert_eq!(find("user@.example.com"), []);
    assert_eq!(find("user@"), []);
    assert_eq!(find(&format!("{}@example.com", "a".repeat(65))), []); // local part too long
    let long_domain = format!("a@{}.com", "b".repeat(260));
    assert_eq!(find(&long_domain), []);
}

// ----- phone ----------------------------------------------------------------------------------

#[test]
fn phone_positive() {
    for p in [
        "+1 (415) 555-2671",
        "+44 20 7946 0958",
        "+4915112345678",
        "+1-415-555-2671",
        "+33.1.23.45.67.89",
        "+1(415)555-2671",
        "(415) 555-2671",
        "(415)555-2671",
        "415-555-2671",
        "415.555.2671",
    ] {
        assert_eq!(find(&format!("call {p}, now")), one("phone", p), "{p}");
    }
    // 15 digits at most: the group that would make 16 is not taken
    assert_eq!(find("+1 234 567 890 123 45 6"), one("phone", "+1 234 567 890 123 45"));
}

#[test]
fn phone_negative() {
    assert_eq!(find("4155552671"), []); // a plain 10-digit run
    assert_eq!(find("415 555 2671"), []);
    assert_eq!(find("+1234567"), []); // 7 digits
    assert_eq!(find("+1234567890123456"), []); // 16 digits in one group
    let phone = Enabled::default().with(Builtin::Phone);
    assert_eq!(find_with("1+4915112345678", phone), []); // a digit before +
    assert_eq!(find("1(415) 555-2671"), []);
    assert_eq!(find("(415) 555-26712"), []);
    assert_eq!(find("(4155) 555-2671"), []);
    assert_eq!(find("415-555-26710"), []);
    assert_eq!(find("+1 (415) (555) 2671"), []); // one group in parentheses at most
                                                 // decision: `+` and two dot-joined groups is a signed amount, unless a country code (1–3 digits,
                                                 // not starting with 0) and at least 8 digits
    assert_eq!(find("+1234567.89"), []);
    assert_eq!(find("+100.00000"), []);
    assert_eq!(find("+1.4155552"), []);
    assert_eq!(find("+0.12345678"), []);
    assert_eq!(find("+1234.56789012"), []);
}

#[test]
fn phone_dotted_country_code() {
    // RFC 5733 (EPP, WHOIS): `+CC.NUMBER`
    for p in ["+1.4155552671", "+44.2079460958", "+353.12345678", "+49.15112345678"] {
        assert_eq!(find(&format!("Phone: {p}\n")), one("phone", p), "{p}");
    }
}

// ----- us_routing ------------------------------------------------------------------------------

#[test]
fn routing() {
    assert_eq!(find("aba 021000021;"), one("us_routing", "021000021"));
    assert_eq!(find("011000015"), one("us_routing", "011000015"));
    assert_eq!(find("021000022"), []); // checksum
    assert_eq!(find("131000021"), []); // prefix 13
    assert_eq!(find("0210000210"), []); // 10 digits
    assert_eq!(find("1021000021"), []);
    assert_eq!(find("02100002"), []);
    assert_eq!(find("x021000021x"), one("us_routing", "021000021"));
}

// ----- ipv4 -----------------------------------------------------------------------------------

#[test]
fn ipv4() {
    for ip in ["192.168.1.1", "10.0.0.255", "0.0.0.0", "255.255.255.255", "8.8.4.4"] {
        assert_eq!(find(&format!("host {ip}:5432")), one("ipv4", ip), "{ip}");
    }
    assert_eq!(find("at 1.2.3.4."), one("ipv4", "1.2.3.4"));
    assert_eq!(find("v1.2.3.4"), one("ipv4", "1.2.3.4"));
    for bad in
        ["256.1.1.1", "1.1.1.256", "01.2.3.4", "1.2.3.04", "1.2.3.4.5", "1.2.3", ".1.2.3.4", "11.2.3.4444"]
    {
        assert_eq!(find_with(bad, Enabled::default().with(Builtin::Ipv4)), [], "{bad}");
    }
}

// ----- aws_access_key --------------------------------------------------------------------------

#[test]
fn aws_key() {
    assert_eq!(find("key=AKIAIOSFODNN7EXAMPLE;"), one("aws_access_key", "AKIAIOSFODNN7EXAMPLE"));
    for p in ["ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA"] {
        let k = format!("{p}IOSFODNN7EXAMPLE");
        assert_eq!(find(&format!("({k})")), one("aws_access_key", &k));
    }
    assert_eq!(find("xAKIAIOSFODNN7EXAMPLE"), []);
    assert_eq!(find("AKIAIOSFODNN7EXAMPLEX"), []);
    assert_eq!(find("AKIAIOSFODNN7EXAMPL"), []);
    assert_eq!(find("ABCDIOSFODNN7EXAMPLE"), []);
    assert_eq!(find("AKIAiosfodnn7example"), []);
}

// ----- jwt ------------------------------------------------------------------------------------

const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

#[test]
fn jwt_positive() {
    assert_eq!(find(&format!("Authorization: Bearer {JWT}\r\n")), one("jwt", JWT));
    let unsigned = "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxMjM0NTY3ODkwIn0.";
    assert_eq!(find(&format!("t {unsigned} x")), one("jwt", unsigned));
    // longer than a stream's window: found whole, signature included
    let long = format!("eyJhbGciOiJIUzI1NiJ9.eyJ{}.sig", "a".repeat(5000));
    assert_eq!(find(&format!("Bearer {long}\n")), one("jwt", &long));
    let long = format!("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.{}", "s".repeat(5000));
    assert_eq!(find(&long), one("jwt", &long));
    // beyond the cap: cut there (the structure up to the second dot must fit)
    let long = format!("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.{}", "s".repeat(JWT_MAX));
    let got = find(&long);
    assert_eq!(got.len(), 1);
    assert!(got[0].1 == long[..JWT_MAX]);
    let long = format!("eyJhbGciOiJIUzI1NiJ9.eyJ{}.sig", "a".repeat(JWT_MAX));
    assert_eq!(find(&long), []);
}

#[test]
fn jwt_negative() {
    assert_eq!(find("eyJabc.eyJdef.ghi"), []); // segments too short
    assert_eq!(find(&format!("x{JWT}")), []); // no word start
    assert_eq!(find("eyJhbGciOiJIUzI1NiJ9.e30.sig"), []); // payload is not an object
    assert_eq!(find("eyJhbGciOiJIUzI1NiJ9"), []);
}

// ----- password_assignment -----------------------------------------------------------------------

#[test]
fn password_positive() {
    let pa = "password_assignment";
    assert_eq!(find("password=hunter2&x=1"), one(pa, "hunter2"));
    assert_eq!(find(r#"{"api_key": "abc123", "n": 1}"#), one(pa, "abc123"));
    assert_eq!(find("PASSWORD : 's3 cr3t'"), one(pa, "s3 cr3t"));
    assert_eq!(find("db_password=x"), one(pa, "x"));
    assert_eq!(find("Passwd:abc,def"), one(pa, "abc"));
    assert_eq!(find("pwd\t=\tqwe;"), one(pa, "qwe"));
    assert_eq!(find("?token=abc.def&b=2"), one(pa, "abc.def"));
    assert_eq!(find("SECRET=xyz"), one(pa, "xyz"));
    assert_eq!(find("apikey=k1 api_key=k2"), vec![(pa, "k1".into()), (pa, "k2".into())]);
    assert_eq!(find("access_token=xyz"), one(pa, "xyz"));
    assert_eq!(find("client_secret: 'xyz'"), one(pa, "xyz"));
    // an unterminated quote ends at the line
    assert_eq!(find("password=\"abc\nnext"), one(pa, "abc"));
    // longer than a stream's window: to its end; beyond the cap, cut there
    let long = format!("password={} next", "v".repeat(1000));
    assert_eq!(find(&long), one(pa, &"v".repeat(1000)));
    let long = format!("password='{}'", "v w".repeat(1000));
    assert_eq!(find(&long), one(pa, &"v w".repeat(1000)));
    let long = format!("password={}", "v".repeat(PASSWORD_VALUE_MAX + 10));
    let got = find(&long);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.len(), PASSWORD_VALUE_MAX);
}

#[test]
fn password_key_ends_an_identifier() {
    let pa = "password_assignment";
    for key in [
        "PGPASSWORD",
        "DB_PASSWORD",
        "db_password",
        "mypassword",
        "MYSQL_PWD",
        "OLDPWD",
        "AWS_SECRET_ACCESS_KEY",
        "aws_secret_access_key",
        "awsSecretAccessKey",
        "PRIVATE_KEY",
        "private-key",
        "privateKey",
        "AUTH_TOKEN",
        "auth_token",
        "GITHUB_TOKEN",
        "X-Auth-Token",
        "clientSecret",
        "client_secret",
        "CLIENT-SECRET",
        "accessToken",
        "x-api-key",
        "apiKey",
        "--password",
        "spring.datasource.password",
        "pass_word",
    ] {
        assert_eq!(find(&format!("{key}=s3cr3t;")), one(pa, "s3cr3t"), "{key}");
        assert_eq!(find(&format!("export {key}=\"s3cr3t\"\n")), one(pa, "s3cr3t"), "{key}");
        assert_eq!(find(&format!("{{\"{key}\": \"s3cr3t\"}}")), one(pa, "s3cr3t"), "{key}");
        assert_eq!(find(&format!("{key}: s3cr3t")), one(pa, "s3cr3t"), "{key}");
    }
}

#[test]
fn password_keys_table() {
    for key in PASSWORD_KEYS {
        assert!(key.len() <= super::text::KEY_MAX, "{key}");
        assert!(key.bytes().all(|b| b.is_ascii_lowercase()), "{key}");
        assert!(super::text::KEY_LAST.contains(&key.as_bytes()[key.len() - 1]), "{key}");
    }
}

#[test]
fn password_negative() {
    assert_eq!(find("passwords=x"), []); // the key must end the identifier
    assert_eq!(find("password2=x"), []);
    assert_eq!(find("password_=x"), []);
    assert_eq!(find("secret_key_id=x"), []);
    assert_eq!(find("tokens: x"), []);
    assert_eq!(find("password.length=8"), []);
    assert_eq!(find("12:30 pwd"), []);
    assert_eq!(find("password_hash=x"), []);
    assert_eq!(find("password="), []);
    assert_eq!(find("password= &x"), []);
    assert_eq!(find("password = \"\""), []);
    assert_eq!(find("password is secret"), []);
    assert_eq!(find("let t = Token::new();"), []);
    assert_eq!(find("password\n=x"), []);
    assert_eq!(find(&format!("password{}=x", " ".repeat(17))), []);
}

// ----- overlaps and boundaries ----------------------------------------------------------------

#[test]
fn overlaps_resolve_leftmost_then_longest() {
    // E.164 starts before the national form inside it
    assert_eq!(find("+1 (415) 555-2671"), one("phone", "+1 (415) 555-2671"));
    // same start: the email is longer than the card
    assert_eq!(find("4111111111111111@example.com"), one("email", "4111111111111111@example.com"));
    // same span: the lower id wins (card before password)
    assert_eq!(find("password=4111111111111111"), one("credit_card", "4111111111111111"));
    // the password value starts at the quote's end; the email is the same span
    assert_eq!(find("token='a@example.com'"), one("email", "a@example.com"));
    // the value is longer than the JWT? no: equal, the JWT has the lower id
    assert_eq!(find(&format!("token={JWT}")), one("jwt", JWT));
    // a value that runs over a card
    assert_eq!(find("secret='x 4111111111111111'"), one("password_assignment", "x 4111111111111111"));
    // several detectors in a row
    let s = "4111111111111111 123-45-6789 john@example.com +44 20 7946 0958 021000021 10.1.2.3";
    let got: Vec<&str> = find(s).into_iter().map(|(n, _)| n).collect();
    assert_eq!(got, ["credit_card", "us_ssn", "email", "phone", "us_routing", "ipv4"]);
}

#[test]
fn overlapping_candidates_are_merged() {
    // a phone that runs into a card: the union, attributed to the phone (leftmost)
    assert_eq!(
        find("+1 415 555 2671 4111 1111 1111 1111"),
        one("phone", "+1 415 555 2671 4111 1111 1111 1111")
    );
    let card_phone = Enabled::default().with(Builtin::Phone).with(Builtin::CreditCard);
    let got = find_with("x +1 415 555 2671 4111 1111 1111 1111 y", card_phone);
    assert_eq!(got, one("phone", "+1 415 555 2671 4111 1111 1111 1111"));
    // a phone that runs into an SSN
    assert_eq!(find("+1 415 555 2671 123-45-6789"), one("phone", "+1 415 555 2671 123-45-6789"));
    assert_eq!(find("+33 1 23 45 67 89 123 45 6789"), one("phone", "+33 1 23 45 67 89 123 45 6789"));
    // two cards in one token: every Luhn-valid window is a candidate, overlapping ones merge
    let cards = Enabled::default().with(Builtin::CreditCard);
    let two = "3782 822463 10005 4002 1111 1111 1113";
    assert_eq!(find_with(two, cards), one("credit_card", two));
    assert_eq!(find(&format!("cards: {two}.")), one("credit_card", two));
    // two cards that do not overlap stay two; windows across both (`1111 1111 4111 1111` passes
    // Luhn) join them
    let got = find_with("4111 1111 1111 1111, 4111 1111 1111 1111", cards);
    assert_eq!(got, vec![("credit_card", "4111 1111 1111 1111".into()); 2]);
    let got = find_with("4111 1111 1111 1111 4111 1111 1111 1111", cards);
    assert_eq!(got, one("credit_card", "4111 1111 1111 1111 4111 1111 1111 1111"));
    // an IBAN whose last group starts a card window
    let iban_card = "BE68 5390 0754 7034 1111 1111 1118";
    let got = find_with(iban_card, Enabled::default().with(Builtin::Iban).with(Builtin::CreditCard));
    assert_eq!(got, one("iban", iban_card));
    // an email whose local part is a phone number and more
    assert_eq!(find("+1 415 555 2671 1234-5@ex.com"), one("phone", "+1 415 555 2671 1234-5@ex.com"));
    // contained candidates change nothing
    assert_eq!(find("GB82WEST12345698765432"), one("iban", "GB82WEST12345698765432"));
}

#[test]
fn non_ascii_letters() {
    for addr in [
        "josé.garcía@example.com",
        "jörg@example.com",
        "info@münchen.de",
        "用户@例子.广告",
        "δοκιμή@παράδειγμα.δοκιμή",
    ] {
        assert_eq!(find(&format!("mail {addr} ok")), one("email", addr), "{addr}");
        assert_eq!(find(&format!("«{addr}»")), one("email", addr), "{addr}");
        assert_eq!(find(&format!("<{addr}>")), one("email", addr), "{addr}");
    }
    // combining marks (NFD) and bytes that are not UTF-8 are part of an address
    assert_eq!(find("mail jose\u{301}@example.com"), one("email", "jose\u{301}@example.com"));
    let mut latin1 = b"mail jos\xe9@example.com ok".to_vec();
    let mut out = Vec::new();
    scan(&latin1, Enabled::all(), &mut out);
    assert_eq!(out, [Found { start: 5, end: 21, detector: Builtin::Email }]);
    // non-ASCII spaces and punctuation are not
    assert_eq!(find("to:\u{a0}bob@example.com\u{a0}now"), one("email", "bob@example.com"));
    assert_eq!(find("bob@example.com\u{2026}"), one("email", "bob@example.com"));
    assert_eq!(find("bob@exa\u{2014}mple.com"), []);
    // a key glued to a non-ASCII letter is inside a word; next to punctuation it is not
    assert_eq!(find("éAKIAIOSFODNN7EXAMPLE"), []);
    assert_eq!(find("AKIAIOSFODNN7EXAMPLEé"), []);
    assert_eq!(find("中AKIAIOSFODNN7EXAMPLE"), []);
    assert_eq!(find("«AKIAIOSFODNN7EXAMPLE»"), one("aws_access_key", "AKIAIOSFODNN7EXAMPLE"));
    assert_eq!(find("密钥：AKIAIOSFODNN7EXAMPLE"), one("aws_access_key", "AKIAIOSFODNN7EXAMPLE"));
    assert_eq!(find("ÜDE89370400440532013000"), []);
    assert_eq!(find("DE89370400440532013000ß"), []);
    assert_eq!(find("\u{a0}DE89370400440532013000\u{a0}"), one("iban", "DE89370400440532013000"));
    assert_eq!(find(&format!("é{JWT}")), []);
    assert_eq!(find(&format!("—{JWT}")), one("jwt", JWT));
    // not UTF-8: no letter at a boundary
    latin1 = b"\xabAKIAIOSFODNN7EXAMPLE\xbb".to_vec();
    out.clear();
    scan(&latin1, Enabled::all(), &mut out);
    assert_eq!(out, [Found { start: 1, end: 21, detector: Builtin::AwsAccessKey }]);
    // numbers only need digit boundaries, whatever the letters
    assert_eq!(find("né4111111111111111"), one("credit_card", "4111111111111111"));
}

#[test]
fn digit_boundaries() {
    assert_eq!(find("14111111111111111"), []); // 17 digits, Luhn fails
    assert_eq!(find("0021000021"), []);
    assert_eq!(find("1123-45-6789"), []);
    assert_eq!(find("123-45-67891"), []);
    assert_eq!(find("5192.168.1.1"), []);
}

#[test]
fn digit_heavy_rows_find_only_the_pii() {
    let row = "12345|2024-03-01|987.65|ACME 4471|ok|";
    let s = format!("{row}{row}card 4111 1111 1111 1111|{row}1.5|2.25|3|{row}");
    assert_eq!(find(&s), one("credit_card", "4111 1111 1111 1111"));
}

// ----- robustness -----------------------------------------------------------------------------

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_bytes_never_panic_and_results_are_well_formed() {
    // bytes that matter to the detectors, so that near-misses of every shape are frequent
    const ALPHABET: &[u8] = b"0123456789012345678901234567890123456789 - . ( ) + @ = : \" ' & , ; \n\t_ \
        AKIASEDEGBNOFRXeyJpasswordtokenapi_keysecretclient_secretPWDabcxyz.com";
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut data = Vec::new();
    let mut out = Vec::new();
    for round in 0..20_000 {
        data.clear();
        let len = rng.below(200);
        let raw = round % 4 == 0;
        for _ in 0..len {
            let b = if raw { rng.next() as u8 } else { ALPHABET[rng.below(ALPHABET.len())] };
            data.push(b);
        }
        // splice in real values now and then
        if round % 3 == 0 {
            let pieces: [&[u8]; 8] = [
                b"4111 1111 1111 1111",
                b"123-45-6789",
                b"DE89 3704 0044 0532 0130 00",
                b"a@b.example.com",
                b"+1 (415) 555-2671",
                b"021000021",
                JWT.as_bytes(),
                b"password='x'",
            ];
            let at = rng.below(data.len() + 1);
            let piece = pieces[rng.below(pieces.len())];
            data.splice(at..at, piece.iter().copied());
        }
        let enabled = if round % 5 == 0 { Enabled((rng.next() & 0x3ff) as u16) } else { Enabled::all() };
        out.clear();
        scan(&data, enabled, &mut out);
        check_invariants(&data, enabled, 0, &out);
        // scanning is deterministic
        let mut again = vec![Found { start: 0, end: 1, detector: Builtin::Jwt }];
        scan(&data, enabled, &mut again);
        assert_eq!(&again[1..], &out[..]);
    }
}

/// Random text made of number-like tokens, words, keys and punctuation: near-misses of every shape.
fn structured(rng: &mut XorShift, out: &mut Vec<u8>, len: usize) {
    const SEPS: &[&[u8]] =
        &[b" ", b"-", b".", b"|", b"(", b")", b"+", b"@", b"=", b": ", b"\n", b"", b"  ", b"_", b":", b"'"];
    const WORDS: &[&[u8]] = &[
        b"ACME",
        b"DE89",
        b"GB82",
        b"NO93",
        b"AKIA",
        b"ASIAIOSFODNN7EXAMPLE",
        b"eyJhbGciOiJIUzI1NiJ9",
        b"eyJ",
        b"password",
        b"Token",
        b"api_key",
        b"pwd",
        b"secret",
        b"client_secret",
        b"x",
        b"com",
        b"example",
        b"a.b",
        b"'",
        b"\"",
        b"WEST",
        b"JWT",
        b"e",
        b"PGPASSWORD",
        b"X-Auth-Token",
        b"MYSQL_PWD",
        b"\"",
        b"\xc3\xa9",
        b"\xc3\xbc",
        b"\xc2\xa0",
        b"\xc2\xab",
        b"\xe4\xb8\xad",
        b"\xe9",
        b"\xcc\x81",
        b"j\xc3\xb6rg@m\xc3\xbcnchen.de",
    ];
    out.clear();
    while out.len() < len {
        match rng.below(3) {
            0 | 1 => {
                let long = rng.below(4) == 0;
                let digits = 1 + rng.below(if long { 20 } else { 5 });
                // few distinct digits now and then: checksums pass more often
                let alphabet = if rng.below(2) == 0 { 3 } else { 10 };
                for _ in 0..digits {
                    out.push(b"0123456789"[rng.below(alphabet)]);
                }
            }
            _ => out.extend_from_slice(WORDS[rng.below(WORDS.len())]),
        }
        out.extend_from_slice(SEPS[rng.below(SEPS.len())]);
    }
}

#[test]
fn block_scanner_agrees_with_the_plain_loop() {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut data = Vec::new();
    let (mut fast, mut slow) = (Vec::new(), Vec::new());
    let mut found = 0;
    for round in 0..60_000 {
        let len = if round % 10 == 0 { 64 + rng.below(400) } else { rng.below(140) };
        structured(&mut rng, &mut data, len);
        if round % 7 == 0 {
            // start anywhere: the block boundaries fall elsewhere
            let cut = rng.below(data.len().min(70) + 1);
            data.drain(..cut);
        }
        let enabled = if round % 4 == 0 { Enabled((rng.next() & 0x3ff) as u16) } else { Enabled::all() };
        fast.clear();
        slow.clear();
        // the block scanner with its filters against the plain loop without them
        run_blocks(&data, enabled, &mut fast);
        run_scalar(&data, enabled, &mut slow, false);
        assert_eq!(fast, slow, "{:?}", String::from_utf8_lossy(&data));
        // and the plain loop with the word filter (short inputs take it)
        slow.clear();
        run_scalar(&data, enabled, &mut slow, true);
        assert_eq!(fast, slow, "{:?}", String::from_utf8_lossy(&data));
        found += fast.len();
    }
    assert!(found > 10_000, "{found}");
}

#[test]
fn a_match_is_found_wherever_it_sits() {
    // every detector, at every offset of a noisy row, with the row's bytes on both sides
    let cases: [(&str, &str); 10] = [
        ("credit_card", "4111 1111 1111 1111"),
        ("us_ssn", "123-45-6789"),
        ("iban", "DE89370400440532013000"),
        ("email", "john@example.com"),
        ("phone", "+44 20 7946 0958"),
        ("us_routing", "021000021"),
        ("ipv4", "10.20.30.40"),
        ("aws_access_key", "AKIAIOSFODNN7EXAMPLE"),
        ("jwt", JWT),
        ("password_assignment", "hunter2"),
    ];
    for (name, value) in cases {
        for pad in ["", " ", "|", "x|", "ab ; "] {
            let text = if name == "password_assignment" {
                format!("{pad}password={value} {pad}")
            } else {
                format!("{pad}{value} {pad}")
            };
            assert_eq!(find(&text), one(name, value), "{text:?}");
        }
    }
}

#[test]
fn values_at_every_offset_across_block_edges() {
    // digit-heavy filler that matches nothing, the value at every offset around the 64-byte
    // blocks, and both ends of the input
    let filler = "12|2024-01-28|7.5|ab 99;".repeat(20);
    let cases: [(&str, &str); 7] = [
        ("credit_card", "4111 1111 1111 1111"),
        ("credit_card", "4111111111111111"),
        ("us_ssn", "123-45-6789"),
        ("iban", "DE89370400440532013000"),
        ("email", "john@example.com"),
        ("phone", "(415) 555-2671"),
        ("jwt", JWT),
    ];
    for (name, value) in cases {
        for offset in 0..200 {
            let head = &filler[..offset];
            let sep = if head.is_empty() || head.ends_with('|') { "" } else { "|" };
            for tail in ["", "|", "|123"] {
                let text = format!("{head}{sep}{value}{tail}");
                assert_eq!(find(&text), one(name, value), "offset {offset}: {text:?}");
            }
        }
    }
}

#[test]
fn adversarial_inputs_stay_linear() {
    // each of these would be quadratic (or worse) with naive rescans; they must finish quickly
    let inputs: Vec<Vec<u8>> = vec![
        "-eyJ".repeat(50_000).into_bytes(),
        format!("eyJ{}.eyJ", "-eyJa".repeat(20_000)).into_bytes(),
        "pwd=".repeat(50_000).into_bytes(),
        "1 ".repeat(100_000).into_bytes(),
        "1234 ".repeat(50_000).into_bytes(),
        "a@".repeat(100_000).into_bytes(),
        format!("a@{}", "b.".repeat(100_000)).into_bytes(),
        "+1 ".repeat(100_000).into_bytes(),
        "1.".repeat(100_000).into_bytes(),
        "(123)".repeat(50_000).into_bytes(),
        "9".repeat(200_000).into_bytes(),
        "DE89 ".repeat(50_000).into_bytes(),
        "AKIA".repeat(50_000).into_bytes(),
        "pwd=".repeat(100_000).into_bytes(),
        "pwd='".repeat(100_000).into_bytes(),
        "pwd=\"pwd='".repeat(50_000).into_bytes(),
        format!("pwd={}", "x".repeat(PASSWORD_VALUE_MAX)).repeat(4).into_bytes(),
        format!("pwd={}pwd=", "x".repeat(PASSWORD_VALUE_MAX)).repeat(4).into_bytes(),
        format!("pwd={}", "apwd=".repeat(100_000)).into_bytes(),
        "password : ".repeat(50_000).into_bytes(),
        "_token=".repeat(50_000).into_bytes(),
        "a=b:c ".repeat(50_000).into_bytes(),
        "é@".repeat(100_000).into_bytes(),
        format!("a@{}", "é.".repeat(100_000)).into_bytes(),
        "\u{301}".repeat(100_000).into_bytes(),
        format!("eyJ{}", "a".repeat(300_000)).into_bytes(),
        format!("eyJhbGciOiJIUzI1NiJ9.eyJ{}", "-eyJhbGciOiJIUzI1NiJ9.eyJa".repeat(10_000)).into_bytes(),
        "4111 1111 1111 1111 ".repeat(20_000).into_bytes(),
        "3782 822463 10005 4002 1111 1111 1113 ".repeat(10_000).into_bytes(),
    ];
    for data in inputs {
        let t = std::time::Instant::now();
        let mut out = Vec::new();
        scan(&data, Enabled::all(), &mut out);
        check_invariants(&data, Enabled::all(), 0, &out);
        // generous: debug builds scan at several MB/s even on these
        assert!(t.elapsed().as_secs() < 5, "{:?}", String::from_utf8_lossy(&data[..20]));
    }
}
