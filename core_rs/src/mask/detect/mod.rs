//! The built-in detectors (`docs/MASKING.md`, table "Detectors"), in one pass over the bytes.
//!
//! [`scan`] reads the input once, 64 bytes at a time: each block is classified without branches
//! into bitmasks (digits, letters and digits, trigger bytes, separators, `=`/`:`), and shifts of those
//! masks give the few positions worth a look (see `scan.rs`):
//! - the end of a digit run whose length and neighbours can make something: the run is then
//!   classified (9 digits: routing number; 13–19: card; a separator and another group: a token of
//!   groups, checked for SSN, phone and separated-card windows as each group arrives; `.`: dotted
//!   quad; `(ddd)`: phone);
//! - a trigger letter at a word start: uppercase (IBAN, AWS key) and `e` (JWT), first through a
//!   branch-free look at 8 bytes;
//! - `@` (email: the local part is read backwards, the domain forwards), `+` (E.164 phone), and `=`
//!   or `:` not preceded by a digit (password assignment: the key is read backwards, the value
//!   forwards).
//!
//! Inputs shorter than 32 bytes (single column values) take a plain byte loop with the same
//! handlers, which is cheaper there; a test checks that both ways find the same on random input.
//!
//! Every candidate is validated (Luhn, mod 97, ABA, SSN ranges) only once its shape fits and appended
//! to `out`; no handler skips a position because an earlier candidate covers it (only a digit
//! token already walked, or a JWT or password value already read, whose checks could find nothing
//! new). Finally the candidates are sorted and overlapping ones are merged: the reported span is the
//! union of candidates that overlap (so that no part of any of them stays in clear), attributed to
//! the leftmost candidate, at the same start the longest, at the same span the detector with the
//! lower id. Work is linear in the input: every byte is looked at a bounded number of times,
//! whatever the input.
//!
//! Decisions beyond the table of `docs/MASKING.md` (each covered by a test):
//! - Amounts: a digit run that is part of a decimal number (followed by `.` and a digit, or
//!   preceded by a digit and `.`) is not a card or routing number (`1234567890123.45` is an
//!   amount), and `+` followed by exactly two groups joined by `.` is a signed amount
//!   (`+1234567.89`), not a phone, unless the first group has 1–3 digits, the first not `0` (a
//!   country code), and the second at least 8 (`+1.4155552671`, RFC 5733).
//! - Separated cards: every window of consecutive groups of a consistently separated token (each
//!   group 3–7 digits, 13–19 digits in all) that passes Luhn is a candidate; so a card followed by a
//!   CVV (`4111 1111 1111 1111 123`) or preceded by a short number (`Order 12 4111 1111 1111 1111`)
//!   is found, and two cards in one token are both found (their windows merge where they overlap).
//!   A token changes where its separator changes.
//! - Non-ASCII: a non-ASCII letter or digit (UTF-8, `char::is_alphanumeric`, or a combining mark)
//!   is a letter for the boundaries of IBANs, AWS keys and JWTs (`éAKIA…` is no key) and is part of
//!   an email local part or domain label (`josé.garcía@example.com`, `info@münchen.de`; a TLD may
//!   be non-ASCII letters too). Bytes that are not UTF-8 count as letters inside an email address
//!   and as no letter at a boundary: both ways mask more. Non-ASCII punctuation and spaces (`«`,
//!   no-break space) are neither.
//! - JWT: each of the first two segments is `eyJ` plus at least 10 more base64url characters; the
//!   structure up to the second `.` must lie within [`JWT_MAX`] bytes, the signature is cut there.
//! - Password assignments: the key is the end of an identifier (letters, digits, `_`, `-`; compared
//!   case-insensitively without `_` and `-`, so `PGPASSWORD`, `DB_PASSWORD`, `MYSQL_PWD`,
//!   `AWS_SECRET_ACCESS_KEY`, `clientSecret`, `X-Auth-Token` and `privateKey` are keys; see
//!   [`PASSWORD_KEYS`]) and may be followed by a closing quote (JSON `"api_key": "v"`); at most 16
//!   spaces or tabs on each side of `=`/`:`; a quoted value ends at its quote or a line break, an
//!   unquoted one at white space, `&`, `,`, `;` or a quote, either at [`PASSWORD_VALUE_MAX`] bytes;
//!   a value starting with `=` or `:` (`Token::new`) is no value. The key itself and its
//!   punctuation precede the reported span.
//! - Lengths: JWTs and password values are reported up to [`JWT_MAX`] and [`PASSWORD_VALUE_MAX`]
//!   bytes in a whole buffer; a stream holds back only [`Builtin::window`] bytes for them.

mod numbers;
mod scan;
mod text;
mod validate;

#[cfg(test)]
mod tests;

/// Longest email address reported (RFC 5321 path limit).
pub const EMAIL_MAX: usize = 254;
/// Longest local part of an email address.
pub const EMAIL_LOCAL_MAX: usize = 64;
/// A JWT is reported up to this many bytes (a longer one is cut here).
pub const JWT_MAX: usize = 64 * 1024;
/// A password value is reported up to this many bytes.
pub const PASSWORD_VALUE_MAX: usize = 64 * 1024;
/// What a stream holds back for a JWT (a longer one split across reads may be partly missed).
pub const JWT_WINDOW: usize = 4096;
/// What a stream holds back for a password value.
pub const PASSWORD_VALUE_WINDOW: usize = 256;

/// Keys of a password assignment, lowercase, without `_` and `-` (an identifier is compared the same
/// way): an identifier ending with one of them is a key.
pub const PASSWORD_KEYS: [&str; 8] =
    ["password", "passwd", "pwd", "secret", "token", "apikey", "privatekey", "secretaccesskey"];

/// A built-in detector. The discriminant is its id: the index in [`Builtin::ALL`] and
/// [`crate::mask::BUILTIN_DETECTORS`], and its bit in [`Enabled`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Builtin {
    CreditCard = 0,
    UsSsn,
    Iban,
    Email,
    Phone,
    UsRouting,
    Ipv4,
    AwsAccessKey,
    Jwt,
    PasswordAssignment,
}

impl Builtin {
    /// Every detector, in id order.
    pub const ALL: [Builtin; 10] = [
        Builtin::CreditCard,
        Builtin::UsSsn,
        Builtin::Iban,
        Builtin::Email,
        Builtin::Phone,
        Builtin::UsRouting,
        Builtin::Ipv4,
        Builtin::AwsAccessKey,
        Builtin::Jwt,
        Builtin::PasswordAssignment,
    ];

    /// The configuration name (`credit_card`, `us_ssn`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Builtin::CreditCard => "credit_card",
            Builtin::UsSsn => "us_ssn",
            Builtin::Iban => "iban",
            Builtin::Email => "email",
            Builtin::Phone => "phone",
            Builtin::UsRouting => "us_routing",
            Builtin::Ipv4 => "ipv4",
            Builtin::AwsAccessKey => "aws_access_key",
            Builtin::Jwt => "jwt",
            Builtin::PasswordAssignment => "password_assignment",
        }
    }

    /// The detector of a configuration name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|b| b.name() == s)
    }

    /// Longest span (bytes) a stream holds back for this detector: the longest form of its values,
    /// except for JWTs and password values, which a whole buffer reports up to [`JWT_MAX`] and
    /// [`PASSWORD_VALUE_MAX`] bytes. (Overlapping candidates are merged, so a reported span can be
    /// longer than any one detector's.)
    pub fn window(self) -> usize {
        match self {
            // 19 digits in at most 6 groups of 3–7: 5 separators
            Builtin::CreditCard => 24,
            Builtin::UsSsn => 11,
            // 34 characters (the format's limit) in groups of 4: 8 spaces
            Builtin::Iban => 42,
            Builtin::Email => EMAIL_MAX,
            // `+`, 15 digits in up to 15 groups, 14 separators, one pair of parentheses
            Builtin::Phone => 32,
            Builtin::UsRouting => 9,
            Builtin::Ipv4 => 15,
            Builtin::AwsAccessKey => 20,
            Builtin::Jwt => JWT_WINDOW,
            Builtin::PasswordAssignment => PASSWORD_VALUE_WINDOW,
        }
    }

    /// Whether the detector finds secrets, which are never partly shown (`last4` renders them as
    /// `redact`).
    pub fn secret(self) -> bool {
        matches!(self, Builtin::AwsAccessKey | Builtin::Jwt | Builtin::PasswordAssignment)
    }

    /// Whether the value normalises to its digits (card, SSN, routing number, phone).
    pub fn numeric(self) -> bool {
        matches!(self, Builtin::CreditCard | Builtin::UsSsn | Builtin::UsRouting | Builtin::Phone)
    }

    #[inline]
    fn bit(self) -> u16 {
        1u16 << (self as u8)
    }
}

/// A set of detectors: bit `i` is the detector with id `i`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enabled(pub u16);

impl Enabled {
    /// Every built-in detector.
    pub fn all() -> Self {
        Self(Builtin::ALL.iter().fold(0, |acc, b| acc | b.bit()))
    }

    /// This set plus `b`.
    #[must_use]
    pub fn with(self, b: Builtin) -> Self {
        Self(self.0 | b.bit())
    }

    #[inline]
    pub fn contains(self, b: Builtin) -> bool {
        self.0 & b.bit() != 0
    }

    /// Whether no known detector is in the set.
    #[inline]
    pub fn is_empty(self) -> bool {
        self.0 & Self::all().0 == 0
    }
}

/// One match: `data[start..end]` was found by `detector`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub start: usize,
    pub end: usize,
    pub detector: Builtin,
}

/// Appends matches of the enabled detectors in `data` to `out`, sorted by start and non-overlapping
/// (overlapping candidates merged into one span).
///
/// Only what this call appends is sorted and made non-overlapping; entries already in `out` are
/// left as they are. Never panics, whatever `data` holds.
pub fn scan(data: &[u8], enabled: Enabled, out: &mut Vec<Found>) {
    scan::run(data, enabled, out);
}
