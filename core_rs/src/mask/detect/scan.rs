//! The single pass: byte classes as bitmasks of 64-byte blocks, the events derived from them, the
//! dispatch, and the final ordering of the candidates.
//!
//! Each block is classified branch-free (a byte-wise loop the compiler vectorises, then one
//! multiply-gather per class and 8 bytes) into bitmasks: digits, alphanumerics, trigger bytes,
//! separators (space, `-`, `)`), dots, assignment operators (`=`, `:`). Shifts of those masks, with
//! the neighbouring blocks' bits, give, still without branches, the few positions worth a look:
//! - the end of a digit run that can matter: 9 or more digits; or followed by a space, dash or `)`
//!   with exactly 3 digits before (SSN, phones) or at least 3 before and 3 after (separated card
//!   groups); or followed by a dot and a digit with at most 3 digits before (IPv4, dotted phones);
//! - a trigger letter at a word start (uppercase: IBAN, AWS key; `e`: JWT);
//! - `@` (email) and `+` (E.164 phone);
//! - `=` or `:` not preceded by a digit (password assignment; `12:30` is no event).
//!
//! Only those positions run scalar code, so the cost of ordinary digit-heavy text is the
//! classification plus a handful of events per row, not a mispredicted branch at every change of
//! byte class (which is what bounds a byte-at-a-time loop, see [`run_scalar`]). The filters only
//! drop positions where nothing can be found: a test compares the two loops on random input.

use super::{Builtin, Enabled, Found};

/// Multiplier that gathers bit 0 of each of 8 bytes into the top byte of the product.
const GATHER: u64 = 0x0102_0408_1020_4080;
/// Bit 0 of each byte.
const LOW_BITS: u64 = 0x0101_0101_0101_0101;

#[inline(always)]
pub(super) fn is_digit(b: &u8) -> bool {
    b.is_ascii_digit()
}

#[inline(always)]
pub(super) fn is_alnum(b: &u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// Whether `c` is a letter or digit for boundaries and email addresses: alphanumeric, or a combining
/// mark (`e` + U+0301 is a letter as much as `é`).
fn word_char(c: char) -> bool {
    c.is_alphanumeric()
        || matches!(c, '\u{300}'..='\u{36f}' | '\u{1ab0}'..='\u{1aff}' | '\u{1dc0}'..='\u{1dff}')
        || matches!(c, '\u{20d0}'..='\u{20ff}' | '\u{fe20}'..='\u{fe2f}')
}

/// The non-ASCII character ending at `p` and its length, when `data[..p]` ends with valid UTF-8.
fn char_before(data: &[u8], p: usize) -> Option<(char, usize)> {
    let head = data.get(p.saturating_sub(4)..p)?;
    // the last character starts at the last byte that is not a continuation byte
    let at = head.iter().rposition(|&b| b & 0xC0 != 0x80)?;
    let tail = head.get(at..)?;
    let c = std::str::from_utf8(tail).ok()?.chars().next()?;
    Some((c, tail.len()))
}

/// The character starting at `p` and its length, when `data[p..]` starts with valid UTF-8.
fn char_at(data: &[u8], p: usize) -> Option<(char, usize)> {
    let rest = data.get(p..)?;
    let head = rest.get(..rest.len().min(4))?;
    let c = head.utf8_chunks().next()?.valid().chars().next()?;
    Some((c, c.len_utf8()))
}

/// Whether a letter or digit ends at `p` (see [`word_char`]; a byte that is not UTF-8 is none).
#[inline]
pub(super) fn letter_before(data: &[u8], p: usize) -> bool {
    match p.checked_sub(1).and_then(|q| data.get(q)) {
        Some(b) if b.is_ascii() => b.is_ascii_alphanumeric(),
        Some(_) => char_before(data, p).is_some_and(|(c, _)| word_char(c)),
        None => false,
    }
}

/// Whether a letter or digit starts at `p` (see [`letter_before`]).
#[inline]
pub(super) fn letter_after(data: &[u8], p: usize) -> bool {
    match data.get(p) {
        Some(b) if b.is_ascii() => b.is_ascii_alphanumeric(),
        Some(_) => char_at(data, p).is_some_and(|(c, _)| word_char(c)),
        None => false,
    }
}

/// Length of the non-ASCII character ending at `p` when it belongs in an email address (a letter
/// or digit, or a byte that is not UTF-8: 1), else 0.
pub(super) fn email_char_before(data: &[u8], p: usize) -> usize {
    match char_before(data, p) {
        Some((c, n)) if word_char(c) => n,
        Some(_) => 0,
        None => usize::from(p > 0),
    }
}

/// Length of the non-ASCII character starting at `p` when it belongs in an email address, else 0.
pub(super) fn email_char_at(data: &[u8], p: usize) -> usize {
    match char_at(data, p) {
        Some((c, n)) if word_char(c) => n,
        Some(_) => 0,
        None => usize::from(p < data.len()),
    }
}

/// End of the run of digits starting at `i` (`i` itself when there is none).
#[inline(always)]
pub(super) fn digits_end(data: &[u8], i: usize) -> usize {
    match data.get(i..) {
        Some(rest) => i + rest.iter().position(|b| !b.is_ascii_digit()).unwrap_or(rest.len()),
        None => i,
    }
}

/// Class bitmasks of one 64-byte block: bit `k` is byte `k` of the block.
#[derive(Debug, Clone, Copy, Default)]
struct Masks {
    /// `0`–`9`.
    digit: u64,
    /// ASCII letters and digits.
    alnum: u64,
    /// Uppercase letters, `e`, `@`, `+`.
    trigger: u64,
    /// Space, `-`, `)`.
    sep: u64,
    /// `.`.
    dot: u64,
    /// `=`, `:`.
    assign: u64,
}

#[inline(always)]
fn gather(w: u64) -> u64 {
    (w & LOW_BITS).wrapping_mul(GATHER) >> 56
}

#[inline(always)]
fn classify(block: &[u8; 64]) -> Masks {
    let mut flags = [0u8; 64];
    for (f, &b) in flags.iter_mut().zip(block) {
        let digit = b.wrapping_sub(b'0') < 10;
        let letter = (b | 0x20).wrapping_sub(b'a') < 26;
        let upper = b.wrapping_sub(b'A') < 26;
        // `|`, not `||`: no branches, so that the loop vectorises
        let trigger = upper | (b == b'e') | (b == b'@') | (b == b'+');
        let sep = (b == b' ') | (b == b'-') | (b == b')');
        let dot = b == b'.';
        let assign = (b == b'=') | (b == b':');
        *f = u8::from(digit)
            | (u8::from(digit | letter) << 1)
            | (u8::from(trigger) << 2)
            | (u8::from(sep) << 3)
            | (u8::from(dot) << 4)
            | (u8::from(assign) << 5);
    }
    let mut m = Masks::default();
    for (k, word) in flags.chunks_exact(8).enumerate() {
        let Some(word) = word.first_chunk::<8>() else { continue };
        let w = u64::from_le_bytes(*word);
        let at = 8 * k;
        m.digit |= gather(w) << at;
        m.alnum |= gather(w >> 1) << at;
        m.trigger |= gather(w >> 2) << at;
        m.sep |= gather(w >> 3) << at;
        m.dot |= gather(w >> 4) << at;
        m.assign |= gather(w >> 5) << at;
    }
    m
}

/// Masks of the block at `base` (bytes past the end count as nothing).
#[inline(always)]
fn block_masks(data: &[u8], base: usize) -> Masks {
    match data.get(base..).and_then(|rest| rest.first_chunk::<64>()) {
        Some(block) => classify(block),
        None => {
            let mut block = [0u8; 64];
            for (d, s) in block.iter_mut().zip(data.get(base..).unwrap_or_default()) {
                *d = *s;
            }
            classify(&block)
        }
    }
}

/// Bit `k` = bit `k - j` of the bits `prev:x` (the previous block's bits come in at the bottom).
#[inline(always)]
fn back(x: u64, prev: u64, j: u32) -> u64 {
    (x << j) | (prev >> (64 - j))
}

/// Bit `k` = bit `k + j` of the bits `x:next`.
#[inline(always)]
fn ahead(x: u64, next: u64, j: u32) -> u64 {
    (x >> j) | (next << (64 - j))
}

/// State of one scan: the input, where candidates go, and which detectors are on.
pub(super) struct Scanner<'a> {
    pub data: &'a [u8],
    out: &'a mut Vec<Found>,
    pub card: bool,
    pub ssn: bool,
    pub iban: bool,
    pub email: bool,
    pub phone: bool,
    pub routing: bool,
    pub ipv4: bool,
    pub aws: bool,
    pub jwt: bool,
    pub password: bool,
    /// A JWT check at a position before this one has read the base64url run up to here: a check
    /// inside it cannot find anything new (keeps adversarial input linear).
    pub jwt_skip_until: usize,
    /// The last password value read, by quote (none, `"`, `'`): where it starts, where the read
    /// stopped, and whether it stopped at its end (not at the length cap). A value of the same kind
    /// starting inside it ends at the same place (keeps `pwd=pwd=pwd=…` linear).
    pub value_read: [(usize, usize, bool); 3],
    /// Any detector that starts at a digit run.
    digit_runs: bool,
    /// Any detector that starts at a word start.
    words: bool,
}

impl<'a> Scanner<'a> {
    fn new(data: &'a [u8], enabled: Enabled, out: &'a mut Vec<Found>) -> Self {
        let on = |b| enabled.contains(b);
        let mut s = Scanner {
            data,
            out,
            card: on(Builtin::CreditCard),
            ssn: on(Builtin::UsSsn),
            iban: on(Builtin::Iban),
            email: on(Builtin::Email),
            phone: on(Builtin::Phone),
            routing: on(Builtin::UsRouting),
            ipv4: on(Builtin::Ipv4),
            aws: on(Builtin::AwsAccessKey),
            jwt: on(Builtin::Jwt),
            password: on(Builtin::PasswordAssignment),
            jwt_skip_until: 0,
            value_read: [(0, 0, false); 3],
            digit_runs: false,
            words: false,
        };
        s.digit_runs = s.card || s.ssn || s.phone || s.routing || s.ipv4;
        s.words = s.iban || s.aws || s.jwt;
        s
    }
}

impl Scanner<'_> {
    /// Records a candidate (any order; [`run`] sorts and resolves overlaps).
    #[inline]
    pub fn push(&mut self, start: usize, end: usize, detector: Builtin) {
        if start < end && end <= self.data.len() {
            self.out.push(Found { start, end, detector });
        }
    }

    /// The letter `b` at `p` follows no ASCII letter or digit: the word-start detectors.
    #[inline]
    fn word(&mut self, p: usize, b: u8) {
        if self.word_may_match(p) {
            self.word_checks(p, b);
        }
    }

    /// [`Self::word`] without the quick filter.
    fn word_checks(&mut self, p: usize, b: u8) {
        if p > 0 && data_byte(self.data, p - 1) >= 0x80 && letter_before(self.data, p) {
            return; // inside a word with non-ASCII letters
        }
        if b.is_ascii_uppercase() {
            if self.iban && self.iban_at(p).is_some() {
                return;
            }
            if b == b'A' && self.aws {
                self.aws_at(p);
            }
        } else if b == b'e' && self.jwt && p >= self.jwt_skip_until {
            self.jwt_at(p);
        }
    }
}

/// `data[i]`, 0 past the end.
#[inline(always)]
fn data_byte(data: &[u8], i: usize) -> u8 {
    data.get(i).copied().unwrap_or(0)
}

/// Inputs shorter than this go through the scalar loop.
pub(super) const SMALL: usize = 32;

/// See [`super::scan`].
pub(super) fn run(data: &[u8], enabled: Enabled, out: &mut Vec<Found>) {
    if enabled.is_empty() || data.is_empty() {
        return;
    }
    if data.len() < SMALL {
        run_scalar(data, enabled, out, true);
    } else {
        run_blocks(data, enabled, out);
    }
}

/// The block scanner (any input length).
pub(super) fn run_blocks(data: &[u8], enabled: Enabled, out: &mut Vec<Found>) {
    let base_len = out.len();
    let mut s = Scanner::new(data, enabled, out);
    // which kinds of events are wanted at all
    let want_runs = if s.digit_runs { u64::MAX } else { 0 };
    let want_words = if s.words { u64::MAX } else { 0 };
    let want_specials = if s.email || s.phone { u64::MAX } else { 0 };
    let want_assign = if s.password { u64::MAX } else { 0 };

    let n = data.len();
    // nothing before the input: no digit, no alphanumeric
    let (mut prev_digit, mut prev_alnum) = (0u64, 0u64);
    let mut cur = block_masks(data, 0);
    // positions before `resume` were consumed by a handler
    let mut resume = 0usize;
    let mut base = 0usize;
    // up to and including position `n`: a run that ends the input ends there
    while base <= n {
        // (a block with no byte of the input has no bit set: no need to classify it)
        let next = if base + 64 < n { block_masks(data, base + 64) } else { Masks::default() };
        let d = cur.digit;
        let nd = next.digit;

        // positions right after a digit run
        let run_end = !d & back(d, prev_digit, 1);
        // "the j bytes before are digits"
        let b1 = back(d, prev_digit, 1);
        let b3 = b1 & back(d, prev_digit, 2) & back(d, prev_digit, 3);
        let b4 = b3 & back(d, prev_digit, 4);
        let b9 = b4
            & back(d, prev_digit, 5)
            & back(d, prev_digit, 6)
            & back(d, prev_digit, 7)
            & back(d, prev_digit, 8)
            & back(d, prev_digit, 9);
        // "the j bytes after are digits"
        let a1 = ahead(d, nd, 1);
        let a3 = a1 & ahead(d, nd, 2) & ahead(d, nd, 3);
        let exactly3 = b3 & !b4;
        let runs = run_end & ((cur.sep & (exactly3 | (b3 & a3))) | (cur.dot & a1 & !b4) | b9) & want_runs;
        let words = cur.trigger & cur.alnum & !back(cur.alnum, prev_alnum, 1) & want_words;
        let specials = (cur.trigger & !cur.alnum & want_specials) | (cur.assign & !b1 & want_assign);

        let mut events = runs | words | specials;
        while events != 0 {
            let k = events.trailing_zeros();
            events &= events - 1;
            let p = base + k as usize;
            if p < resume {
                continue;
            }
            let bit = 1u64 << k;
            if runs & bit != 0 {
                // the run ends at `p`: find its start (within the block when possible)
                let inside = if k == 0 { 0 } else { ((!d) << (64 - k)).leading_zeros() };
                let start = if inside < k {
                    p - inside as usize
                } else {
                    data.get(..p).map_or(p, |head| {
                        p - head.iter().rev().position(|b| !b.is_ascii_digit()).unwrap_or(head.len())
                    })
                };
                if start >= resume {
                    resume = s.digits(start, p);
                }
            }
            if words & bit != 0 {
                if let Some(&b) = data.get(p) {
                    s.word(p, b);
                }
            } else if specials & bit != 0 {
                match data.get(p) {
                    Some(b'@') if s.email => s.email_at(p),
                    Some(b'+') if s.phone => s.e164(p),
                    Some(b'=' | b':') if s.password => s.assign_at(p),
                    _ => {}
                }
            }
        }

        prev_digit = d;
        prev_alnum = cur.alnum;
        cur = next;
        base += 64;
    }
    resolve(s.out, base_len);
}

/// Sorts `out[base..]` by start (longest first at the same start, then by detector id) and merges
/// overlapping candidates: the first of them (leftmost, longest) is kept, its end extended to the
/// furthest end among the candidates overlapping it.
fn resolve(out: &mut Vec<Found>, base: usize) {
    let Some(tail) = out.get_mut(base..) else { return };
    let ordered = |a: &Found, b: &Found| {
        a.start.cmp(&b.start).then(b.end.cmp(&a.end)).then((a.detector as u8).cmp(&(b.detector as u8)))
    };
    if !tail.windows(2).all(|w| matches!(w, [a, b] if ordered(a, b).is_le())) {
        tail.sort_unstable_by(ordered);
    }
    let mut kept = 0usize;
    let mut last_end = 0usize;
    for r in 0..tail.len() {
        let Some(&f) = tail.get(r) else { break };
        if kept > 0 && f.start < last_end {
            if f.end > last_end {
                last_end = f.end;
                if let Some(prev) = tail.get_mut(kept - 1) {
                    prev.end = f.end;
                }
            }
            continue;
        }
        if let Some(slot) = tail.get_mut(kept) {
            *slot = f;
        }
        kept += 1;
        last_end = f.end;
    }
    out.truncate(base + kept);
}

/// The plain loop, for short inputs (where classifying a whole block costs more than it saves):
/// every digit run, every trigger letter at a word start, every `@`, `+`, `=` and `:` goes to its
/// handler.
/// `filter`: whether word starts go through the quick filter first (tests compare both ways).
pub(super) fn run_scalar(data: &[u8], enabled: Enabled, out: &mut Vec<Found>, filter: bool) {
    let base_len = out.len();
    let mut s = Scanner::new(data, enabled, out);
    let mut i = 0;
    while let Some(&b) = data.get(i) {
        if b.is_ascii_digit() {
            let e = digits_end(data, i);
            i = if s.digit_runs { s.digits(i, e) } else { e };
        } else if b == b'@' {
            if s.email {
                s.email_at(i);
            }
            i += 1;
        } else if b == b'+' {
            if s.phone {
                s.e164(i);
            }
            i += 1;
        } else if b == b'=' || b == b':' {
            if s.password && !(i > 0 && data.get(i - 1).is_some_and(is_digit)) {
                s.assign_at(i);
            }
            i += 1;
        } else if b.is_ascii_alphabetic() {
            let start = i == 0 || !data.get(i - 1).is_some_and(is_alnum);
            let trigger = b.is_ascii_uppercase() || b == b'e';
            if start && trigger && s.words {
                if filter {
                    s.word(i, b);
                } else {
                    s.word_checks(i, b);
                }
            }
            i += 1;
            while data.get(i).is_some_and(u8::is_ascii_alphabetic) {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    resolve(s.out, base_len);
}
