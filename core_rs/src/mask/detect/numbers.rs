//! Digit runs and tokens of digit groups: credit cards, SSNs, routing numbers, phones, IPv4.

use super::scan::{digits_end, is_digit, Scanner};
use super::validate::{aba, luhn, ssn_ok};
use super::Builtin;

/// Card groups, when separated.
const CARD_GROUP: std::ops::RangeInclusive<usize> = 3..=7;
/// Card digits.
const CARD_DIGITS: std::ops::RangeInclusive<usize> = 13..=19;
/// Groups a separated card can have: 19 digits in groups of at least 3.
const CARD_MAX_GROUPS: usize = 6;
/// Digits of an E.164 number.
const E164_DIGITS: std::ops::RangeInclusive<usize> = 8..=15;

impl Scanner<'_> {
    /// The digit run `[s, e)` (no digit before or after it). Returns where the scan goes on: after
    /// the run, or at the last group of the token it starts (which may start a token of its own,
    /// with another separator).
    #[inline]
    pub(super) fn digits(&mut self, s: usize, e: usize) -> usize {
        let data = self.data;
        let len = e - s;
        if len == 9 || CARD_DIGITS.contains(&len) {
            self.lone_run(s, e);
        }
        match data.get(e) {
            Some(&sep @ (b' ' | b'-' | b'.')) => {
                if sep == b'.' && len <= 3 && self.ipv4 {
                    self.ipv4_at(s);
                }
                if data.get(e + 1).is_some_and(is_digit) {
                    return self.token(s, e, sep);
                }
            }
            Some(b')') if len == 3 && self.phone && s > 0 && data.get(s - 1) == Some(&b'(') => {
                self.paren_phone(s - 1, e);
            }
            _ => {}
        }
        e
    }

    /// An unseparated run of 9 or 13–19 digits `[s, e)`: routing number or card, unless it is part
    /// of a decimal number.
    fn lone_run(&mut self, s: usize, e: usize) {
        let data = self.data;
        let after_point = s >= 2 && data.get(s - 1) == Some(&b'.') && data.get(s - 2).is_some_and(is_digit);
        let before_point = data.get(e) == Some(&b'.') && data.get(e + 1).is_some_and(is_digit);
        if after_point || before_point {
            return;
        }
        let Some(run) = data.get(s..e) else { return };
        if run.len() == 9 {
            if self.routing && aba(run) {
                self.push(s, e, Builtin::UsRouting);
            }
        } else if self.card && luhn(run) {
            self.push(s, e, Builtin::CreditCard);
        }
    }

    /// A token of digit groups joined by single `sep`s, from its first group `[s0, e0)` (already
    /// handled as a run) on. Every window of consecutive groups that ends at a new group is checked
    /// as it arrives (SSN, phone, separated card). Returns the start of the last group.
    fn token(&mut self, s0: usize, e0: usize, sep: u8) -> usize {
        let data = self.data;
        let cards = self.card && sep != b'.';
        let ssn = self.ssn && sep != b'.';
        let phone = self.phone && sep != b' ';
        // the last groups, newest last; `n` groups seen so far
        let mut w = [(0usize, 0usize); CARD_MAX_GROUPS];
        w[5] = (s0, e0);
        let mut n = 1usize;
        let mut pos = e0;
        while data.get(pos) == Some(&sep) && data.get(pos + 1).is_some_and(is_digit) {
            let s = pos + 1;
            let e = digits_end(data, s);
            if n >= 2 {
                // the previous group is in the middle of the token: nobody else sees it as a run
                let (ms, me) = w[5];
                let len = me - ms;
                if len == 9 || CARD_DIGITS.contains(&len) {
                    self.lone_run(ms, me);
                }
            }
            w.rotate_left(1);
            w[5] = (s, e);
            n += 1;
            if n >= 3 && (ssn || phone) {
                let (a, b, c) = (w[3], w[4], w[5]);
                if a.1 - a.0 == 3 && c.1 - c.0 == 4 {
                    let mid = b.1 - b.0;
                    if mid == 2 && ssn && data.get(a.0..c.1).is_some_and(ssn_ok) {
                        self.push(a.0, c.1, Builtin::UsSsn);
                    } else if mid == 3 && phone {
                        self.push(a.0, c.1, Builtin::Phone);
                    }
                }
            }
            if cards && CARD_GROUP.contains(&(e - s)) {
                self.card_windows(&w, n.min(CARD_MAX_GROUPS));
            }
            pos = e;
        }
        w[5].0
    }

    /// Separated-card windows ending at the newest of the `count` groups in `w`.
    fn card_windows(&mut self, w: &[(usize, usize); CARD_MAX_GROUPS], count: usize) {
        let end = w[5].1;
        let mut digits = 0usize;
        for &(s, e) in w.iter().rev().take(count) {
            let len = e - s;
            if !CARD_GROUP.contains(&len) {
                break;
            }
            digits += len;
            if digits > *CARD_DIGITS.end() {
                break;
            }
            if CARD_DIGITS.contains(&digits) && self.data.get(s..end).is_some_and(luhn) {
                self.push(s, end, Builtin::CreditCard);
            }
        }
    }

    /// `(ddd) ddd-dddd` or `(ddd)ddd-dddd`, `(` at `open`, `)` at `close`.
    fn paren_phone(&mut self, open: usize, close: usize) {
        let data = self.data;
        if open > 0 && data.get(open - 1).is_some_and(is_digit) {
            return;
        }
        let mut q = close + 1;
        if data.get(q) == Some(&b' ') {
            q += 1;
        }
        let a = digits_end(data, q);
        if a - q != 3 || data.get(a) != Some(&b'-') {
            return;
        }
        let b = digits_end(data, a + 1);
        if b - (a + 1) == 4 {
            self.push(open, b, Builtin::Phone);
        }
    }

    /// E.164 at the `+` at `p`: 8–15 digits in groups joined by one space, dash or dot, one group
    /// possibly in parentheses (`+1 (415) 555-2671`, `+44 20 7946 0958`, `+4915112345678`).
    pub(super) fn e164(&mut self, p: usize) {
        let data = self.data;
        if p > 0 && data.get(p - 1).is_some_and(is_digit) {
            return;
        }
        let mut pos = p + 1;
        let mut digits = 0usize;
        let mut groups = 0usize;
        let mut end = pos;
        let mut paren = false; // a group in parentheses was seen
        let mut closed = false; // the last group was in parentheses
        let mut dots_only = true; // every joiner is a single '.'
        let mut lens = [0usize; 2]; // digits of the first two groups
        loop {
            let mut q = pos;
            let mut joiner = None;
            if groups > 0 {
                if let Some(&j @ (b' ' | b'-' | b'.')) = data.get(q) {
                    joiner = Some(j);
                    q += 1;
                }
            }
            let joined = joiner.is_some();
            let open = !paren && data.get(q) == Some(&b'(');
            if open {
                q += 1;
            }
            if groups > 0 && !joined && !open && !closed {
                break;
            }
            let de = digits_end(data, q);
            if de == q || digits + (de - q) > *E164_DIGITS.end() {
                break;
            }
            let mut ge = de;
            if open {
                if data.get(de) != Some(&b')') {
                    break;
                }
                ge += 1;
                paren = true;
            }
            if groups > 0 {
                dots_only &= joiner == Some(b'.');
            }
            digits += de - q;
            if let Some(len) = lens.get_mut(groups) {
                *len = de - q;
            }
            groups += 1;
            closed = open;
            end = ge;
            pos = ge;
        }
        if !E164_DIGITS.contains(&digits) || data.get(end).is_some_and(is_digit) {
            return;
        }
        if groups == 2 && dots_only {
            // `+1234567.89` is a signed amount; `+1.4155552671` a country code and a number
            let [cc, number] = lens;
            let country = (1..=3).contains(&cc) && data.get(p + 1).is_some_and(|&b| b != b'0');
            if !(country && number >= 8) {
                return;
            }
        }
        self.push(p, end, Builtin::Phone);
    }

    /// A dotted quad starting at `s` (a digit run followed by `.`).
    fn ipv4_at(&mut self, s: usize) {
        let data = self.data;
        if s > 0 && data.get(s - 1) == Some(&b'.') {
            return;
        }
        let mut pos = s;
        for k in 0..4 {
            if k > 0 {
                if data.get(pos) != Some(&b'.') {
                    return;
                }
                pos += 1;
            }
            let e = digits_end(data, pos);
            let Some(octet) = data.get(pos..e) else { return };
            let ok = match *octet {
                [_] => true,
                [a, _] => a != b'0',
                [a, b, c] => a != b'0' && (a, b, c) <= (b'2', b'5', b'5'),
                _ => false,
            };
            if !ok {
                return;
            }
            pos = e;
        }
        if data.get(pos) == Some(&b'.') && data.get(pos + 1).is_some_and(is_digit) {
            return;
        }
        self.push(s, pos, Builtin::Ipv4);
    }
}
