//! Detectors that start at a letter, `@`, `=` or `:`: IBAN, AWS access key, JWT, email, password
//! assignment.

use super::scan::{email_char_at, email_char_before, letter_after, Scanner};
use super::validate::{iban_len, iban_mod97};
use super::{Builtin, EMAIL_LOCAL_MAX, EMAIL_MAX, JWT_MAX, PASSWORD_KEYS, PASSWORD_VALUE_MAX};

/// Prefixes of AWS access key ids (the first letter, `A`, is checked by the caller).
const AWS_PREFIXES: [&[u8; 4]; 8] = [b"AKIA", b"ASIA", b"AGPA", b"AIDA", b"AROA", b"ANPA", b"ANVA", b"AIPA"];
/// Characters after the prefix of an AWS access key id.
const AWS_BODY: usize = 16;
/// Base64url characters after `eyJ` in each of the first two segments of a JWT, at least.
const JWT_MIN_SEGMENT: usize = 10;
/// Spaces or tabs allowed on each side of the `=` or `:` of a password assignment.
const ASSIGN_SPACES: usize = 16;
/// Length of the longest password key (letters compared, without `_` and `-`).
pub(super) const KEY_MAX: usize = 15;
/// The last letters of the password keys (a quick rejection).
pub(super) const KEY_LAST: [u8; 4] = [b'd', b't', b'n', b'y'];

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

/// Length of the email label character at `p` (ASCII letter, digit, `-`, or a non-ASCII letter:
/// see [`email_char_at`]), 0 when there is none.
#[inline]
fn label_char(data: &[u8], p: usize) -> usize {
    match data.get(p) {
        Some(b) if b.is_ascii() => usize::from(email_label(b)),
        Some(_) => email_char_at(data, p),
        None => 0,
    }
}

/// Length of the email label starting at `p` in `data`.
fn label_len(data: &[u8], p: usize) -> usize {
    let mut q = p;
    loop {
        let n = label_char(data, q);
        if n == 0 {
            break;
        }
        q += n;
    }
    q.min(data.len()).saturating_sub(p)
}

/// A top-level domain: at least two characters, all letters (ASCII, or non-ASCII as in labels).
fn tld_ok(t: &[u8]) -> bool {
    let chars = t.iter().filter(|&&b| b & 0xC0 != 0x80).count();
    chars >= 2 && t.iter().all(|b| b.is_ascii_alphabetic() || !b.is_ascii())
}

/// Whether an identifier ending with the letters `tail` (lowercase, without `_` and `-`, last
/// letter first) ends with a password key.
fn ends_with_key(tail: &[u8]) -> bool {
    PASSWORD_KEYS.iter().any(|k| tail.len() >= k.len() && k.bytes().rev().zip(tail).all(|(a, &b)| a == b))
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
        iban | aws | jwt
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
        if letter_after(data, end) || !iban_mod97(data.get(p..end)?) {
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
        if !data.get(p + 4..end)?.iter().all(upper_alnum) || letter_after(data, end) {
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

    /// The `=` or `:` at `o`: a password assignment when the identifier before it (then at most 16
    /// spaces or tabs, possibly after a closing quote) ends with a password key.
    pub(super) fn assign_at(&mut self, o: usize) {
        let data = self.data;
        // backwards: spaces or tabs, a quote, then the last letters of the identifier
        let mut k = o;
        while k > 0 && o - k <= ASSIGN_SPACES && matches!(data.get(k - 1), Some(b' ' | b'\t')) {
            k -= 1;
        }
        if o - k > ASSIGN_SPACES {
            return;
        }
        if k > 0 && matches!(data.get(k - 1), Some(b'"' | b'\'')) {
            k -= 1;
        }
        // quick rejection: every key ends with one of these letters
        if !k.checked_sub(1).and_then(|i| data.get(i)).is_some_and(|b| KEY_LAST.contains(&(b | 0x20))) {
            return;
        }
        let mut tail = [0u8; KEY_MAX];
        let mut n = 0;
        // (at most 4 bytes per letter: a run of `_` or `-` is not walked to its end)
        let floor = k.saturating_sub(4 * KEY_MAX);
        while n < KEY_MAX && k > floor {
            k -= 1;
            match data.get(k) {
                Some(&b) if b.is_ascii_alphanumeric() => {
                    if let Some(slot) = tail.get_mut(n) {
                        *slot = b.to_ascii_lowercase();
                    }
                    n += 1;
                }
                Some(b'_' | b'-') => {}
                _ => break,
            }
        }
        if !ends_with_key(tail.get(..n).unwrap_or_default()) {
            return;
        }
        self.assignment(o + 1);
    }

    /// After the `=` or `:` of a password assignment, at `q`: ` *["']?value`.
    fn assignment(&mut self, mut q: usize) {
        let data = self.data;
        let limit = data.len().min(q + ASSIGN_SPACES);
        q += data.get(q..limit).map_or(0, |s| span(s, |b| *b == b' ' || *b == b'\t'));
        let (kind, quote) = match data.get(q) {
            Some(&c @ b'"') => (1, Some(c)),
            Some(&c @ b'\'') => (2, Some(c)),
            _ => (0, None),
        };
        if quote.is_some() {
            q += 1;
        }
        if matches!(data.get(q), Some(b'=' | b':')) {
            return;
        }
        let in_value = |b: &u8| match quote {
            Some(c) => *b != c && *b != b'\n' && *b != b'\r',
            None => !b.is_ascii_whitespace() && !matches!(*b, b'&' | b',' | b';' | b'"' | b'\''),
        };
        let cap = data.len().min(q + PASSWORD_VALUE_MAX);
        // a value of the same kind read before and holding `q` ends where it ended (or, cut at its
        // cap, is read on from there)
        let (start, read_to, complete) = self.value_read.get(kind).copied().unwrap_or((0, 0, false));
        let from = if start <= q && q < read_to {
            if complete {
                return;
            }
            read_to
        } else {
            q
        };
        let end = from + data.get(from..cap).map_or(0, |v| span(v, in_value));
        if let Some(slot) = self.value_read.get_mut(kind) {
            *slot = (q, end, end < cap || cap == data.len());
        }
        self.push(q, end, Builtin::PasswordAssignment);
    }

    /// Email around the `@` at `a`: `local@label.label…tld`.
    pub(super) fn email_at(&mut self, a: usize) {
        let data = self.data;
        // the local part, backwards: 1–64 bytes, and what precedes it is no local character
        let floor = a.saturating_sub(EMAIL_LOCAL_MAX + 1);
        let mut start = a;
        while start > floor {
            let n = match data.get(start - 1) {
                Some(b) if b.is_ascii() => usize::from(email_local(b)),
                Some(_) => email_char_before(data, start),
                None => 0,
            };
            if n == 0 {
                break;
            }
            start = start.saturating_sub(n);
        }
        let local = a - start;
        if local == 0 || local > EMAIL_LOCAL_MAX {
            return;
        }
        // the domain: labels joined by single dots, within the length limit
        let limit = data.len().min(start + EMAIL_MAX + 1);
        let Some(rest) = data.get(..limit) else { return };
        let mut pos = a + 1;
        let mut dots = 0usize;
        let tld = loop {
            let label = label_len(rest, pos);
            if label == 0 {
                return;
            }
            let tld = pos..pos + label;
            pos += label;
            if rest.get(pos) == Some(&b'.') && label_char(rest, pos + 1) > 0 {
                dots += 1;
                pos += 1;
            } else {
                break tld;
            }
        };
        let end = pos;
        if dots == 0
            || end - start > EMAIL_MAX
            || label_char(data, end) > 0
            || !data.get(tld).is_some_and(tld_ok)
        {
            return;
        }
        self.push(start, end, Builtin::Email);
    }
}
