//! Detectors that start at a letter or `@`: IBAN, AWS access key, JWT, password assignment, email.

use super::scan::{is_alnum, Scanner};
use super::validate::{iban_len, iban_mod97};
use super::{Builtin, EMAIL_LOCAL_MAX, EMAIL_MAX, JWT_MAX, PASSWORD_VALUE_MAX};

/// Prefixes of AWS access key ids (the first letter, `A`, is checked by the caller).
const AWS_PREFIXES: [&[u8; 4]; 8] = [b"AKIA", b"ASIA", b"AGPA", b"AIDA", b"AROA", b"ANPA", b"ANVA", b"AIPA"];
/// Characters after the prefix of an AWS access key id.
const AWS_BODY: usize = 16;
/// Base64url characters after `eyJ` in each of the first two segments of a JWT, at least.
const JWT_MIN_SEGMENT: usize = 10;
/// Spaces or tabs allowed on each side of the `=` or `:` of a password assignment.
const ASSIGN_SPACES: usize = 16;

#[inline]
fn upper_alnum(b: &u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}

#[inline]
fn base64url(b: &u8) -> bool {
    b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_'
}

#[inline]
fn email_local(b: &u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(*b, b'.' | b'_' | b'%' | b'+' | b'-')
}

#[inline]
fn email_label(b: &u8) -> bool {
    b.is_ascii_alphanumeric() || *b == b'-'
}

/// Length of the prefix of `s` whose bytes satisfy `f`.
#[inline]
fn span(s: &[u8], f: impl Fn(&u8) -> bool) -> usize {
    s.iter().position(|b| !f(b)).unwrap_or(s.len())
}

/// The 8 bytes at `p` as a little-endian word, zero-padded past the end of `data`.
#[inline(always)]
fn word_at(data: &[u8], p: usize) -> u64 {
    let rest = data.get(p..).unwrap_or_default();
    match rest.first_chunk::<8>() {
        Some(w) => u64::from_le_bytes(*w),
        None => {
            let mut w = [0u8; 8];
            for (d, s) in w.iter_mut().zip(rest) {
                *d = *s;
            }
            u64::from_le_bytes(w)
        }
    }
}

/// The first `N` (at most 8) bytes of `key` as a little-endian word, with bit 5 of every byte set
/// (ASCII letters lowercased), and the mask of those bytes.
const fn key_word<const N: usize>(key: &[u8]) -> (u64, u64) {
    let mut w = 0u64;
    let mut rest = key;
    let mut i = 0;
    while let [b, tail @ ..] = rest {
        if i == N {
            break;
        }
        w |= ((*b | 0x20) as u64) << (8 * i);
        rest = tail;
        i += 1;
    }
    let mask = if N >= 8 { u64::MAX } else { (1u64 << (8 * N)) - 1 };
    (w, mask)
}

/// Prefixes of the password keys, as [`key_word`]s.
const KEY_WORDS: [(u64, u64); 9] = [
    key_word::<8>(b"password"),
    key_word::<6>(b"passwd"),
    key_word::<3>(b"pwd"),
    key_word::<6>(b"secret"),
    key_word::<5>(b"token"),
    key_word::<7>(b"api_key"),
    key_word::<6>(b"apikey"),
    key_word::<8>(b"access_token"),
    key_word::<8>(b"client_secret"),
];

/// Byte `i` of `w`.
#[inline(always)]
fn byte(w: u64, i: u32) -> u8 {
    (w >> (8 * i)) as u8
}

impl Scanner<'_> {
    /// Whether anything can start at the word start `p`: a branch-free look at its first 8 bytes,
    /// so that ordinary words cost one predictable branch.
    #[inline(always)]
    pub(super) fn word_may_match(&self, p: usize) -> bool {
        let w = word_at(self.data, p);
        let upper = |i| byte(w, i).wrapping_sub(b'A') < 26;
        let digit = |i| byte(w, i).wrapping_sub(b'0') < 10;
        let iban = self.iban & upper(0) & upper(1) & digit(2) & digit(3);
        let prefix = w as u32;
        let aws =
            self.aws & AWS_PREFIXES.iter().fold(false, |any, k| any | (u32::from_le_bytes(**k) == prefix));
        let jwt = self.jwt & ((w & 0xff_ffff) == u64::from(u32::from_le_bytes(*b"eyJ\0")));
        let lower = w | 0x2020_2020_2020_2020;
        let key = self.password & KEY_WORDS.iter().fold(false, |any, &(k, m)| any | (lower & m == k));
        iban | aws | jwt | key
    }

    /// IBAN at the word start `p` (an uppercase letter). Returns its end.
    pub(super) fn iban_at(&mut self, p: usize) -> Option<usize> {
        let data = self.data;
        let head = data.get(p..p + 4)?;
        let [a, b, c, d] = *head else { return None };
        if !b.is_ascii_uppercase() || !c.is_ascii_digit() || !d.is_ascii_digit() {
            return None;
        }
        let len = iban_len(a, b)?;
        let end = if data.get(p + 4) == Some(&b' ') {
            // groups of four separated by single spaces, the last one possibly shorter
            let mut count = 4;
            let mut pos = p + 4;
            while count < len {
                if data.get(pos) != Some(&b' ') {
                    return None;
                }
                let take = (len - count).min(4);
                if !data.get(pos + 1..pos + 1 + take)?.iter().all(upper_alnum) {
                    return None;
                }
                count += take;
                pos += 1 + take;
            }
            pos
        } else {
            if !data.get(p + 4..p + len)?.iter().all(upper_alnum) {
                return None;
            }
            p + len
        };
        if data.get(end).is_some_and(is_alnum) || !iban_mod97(data.get(p..end)?) {
            return None;
        }
        self.push(p, end, Builtin::Iban);
        Some(end)
    }

    /// AWS access key id at the word start `p` (an `A`). Returns its end.
    pub(super) fn aws_at(&mut self, p: usize) -> Option<usize> {
        let data = self.data;
        let prefix = data.get(p..p + 4)?;
        if !AWS_PREFIXES.iter().any(|k| k.as_slice() == prefix) {
            return None;
        }
        let end = p + 4 + AWS_BODY;
        if !data.get(p + 4..end)?.iter().all(upper_alnum) || data.get(end).is_some_and(is_alnum) {
            return None;
        }
        self.push(p, end, Builtin::AwsAccessKey);
        Some(end)
    }

    /// JWT at the word start `p` (an `e`): `eyJ…​.eyJ…​.signature`, cut at [`JWT_MAX`] bytes.
    /// Returns its end.
    pub(super) fn jwt_at(&mut self, p: usize) -> Option<usize> {
        let data = self.data;
        let w = data.get(p..data.len().min(p.saturating_add(JWT_MAX)))?;
        if !w.starts_with(b"eyJ") {
            return None;
        }
        let header = 3 + span(w.get(3..)?, base64url);
        // a check starting inside this header would read the same run: skip those
        self.jwt_skip_until = p + header;
        if header < 3 + JWT_MIN_SEGMENT || w.get(header) != Some(&b'.') {
            return None;
        }
        let ps = header + 1;
        if !w.get(ps..)?.starts_with(b"eyJ") {
            return None;
        }
        let payload = ps + 3 + span(w.get(ps + 3..)?, base64url);
        if payload < ps + 3 + JWT_MIN_SEGMENT || w.get(payload) != Some(&b'.') {
            return None;
        }
        let end = p + payload + 1 + span(w.get(payload + 1..)?, base64url);
        self.push(p, end, Builtin::Jwt);
        Some(end)
    }

    /// A password key at the word start `p` (first byte `b`): the assigned value is the span.
    pub(super) fn password_at(&mut self, p: usize, b: u8) {
        let keys: &[&[u8]] = match b.to_ascii_lowercase() {
            b'p' => &[b"password", b"passwd", b"pwd"],
            b's' => &[b"secret"],
            b't' => &[b"token"],
            b'a' => &[b"api_key", b"apikey", b"access_token"],
            b'c' => &[b"client_secret"],
            _ => return,
        };
        let data = self.data;
        for key in keys {
            if data.get(p..p + key.len()).is_some_and(|k| k.eq_ignore_ascii_case(key)) {
                self.assignment(p + key.len());
                return;
            }
        }
    }

    /// After a password key, at `q`: `["']? *[=:] *["']?value`.
    fn assignment(&mut self, mut q: usize) {
        let data = self.data;
        let spaces = |from: usize| {
            let limit = data.len().min(from + ASSIGN_SPACES);
            from + data.get(from..limit).map_or(0, |s| span(s, |b| *b == b' ' || *b == b'\t'))
        };
        if matches!(data.get(q), Some(b'"' | b'\'')) {
            q += 1;
        }
        q = spaces(q);
        if !matches!(data.get(q), Some(b'=' | b':')) {
            return;
        }
        q = spaces(q + 1);
        let quote = match data.get(q) {
            Some(&c @ (b'"' | b'\'')) => {
                q += 1;
                Some(c)
            }
            _ => None,
        };
        let Some(v) = data.get(q..data.len().min(q + PASSWORD_VALUE_MAX)) else { return };
        let len = match quote {
            Some(c) => span(v, |&b| b != c && b != b'\n' && b != b'\r'),
            None => span(v, |&b| !b.is_ascii_whitespace() && !matches!(b, b'&' | b',' | b';' | b'"' | b'\'')),
        };
        if len == 0 || matches!(v.first(), Some(b'=' | b':')) {
            return;
        }
        self.push(q, q + len, Builtin::PasswordAssignment);
    }

    /// Email around the `@` at `a`: `local@label.label…tld`.
    pub(super) fn email_at(&mut self, a: usize) {
        let data = self.data;
        // the local part, backwards: 1–64 characters, and what precedes it is no local character
        let before = data.get(a.saturating_sub(EMAIL_LOCAL_MAX + 1)..a).unwrap_or_default();
        let local = before.iter().rev().position(|b| !email_local(b)).unwrap_or(before.len());
        if local == 0 || local > EMAIL_LOCAL_MAX {
            return;
        }
        let start = a - local;
        // the domain: labels joined by single dots, within the length limit
        let limit = data.len().min(start + EMAIL_MAX + 1);
        let Some(rest) = data.get(..limit) else { return };
        let mut pos = a + 1;
        let mut dots = 0usize;
        let tld = loop {
            let label = rest.get(pos..).map_or(0, |s| span(s, email_label));
            if label == 0 {
                return;
            }
            let tld = pos..pos + label;
            pos += label;
            if rest.get(pos) == Some(&b'.') && rest.get(pos + 1).is_some_and(email_label) {
                dots += 1;
                pos += 1;
            } else {
                break tld;
            }
        };
        let end = pos;
        if dots == 0
            || end - start > EMAIL_MAX
            || data.get(end).is_some_and(email_label)
            || !data.get(tld).is_some_and(|t| t.len() >= 2 && t.iter().all(u8::is_ascii_alphabetic))
        {
            return;
        }
        self.push(start, end, Builtin::Email);
    }
}
