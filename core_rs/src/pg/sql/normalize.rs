//! A conservative normalizer of SQL text into the cache key of its shape.
//!
//! The key is the statement's token sequence with:
//! - comments removed (`--` to the end of the line; `/* */` nested as in PostgreSQL) — a comment
//!   counts as whitespace;
//! - each run of whitespace (and comments) collapsed to one space, none at either end;
//! - the contents of every literal erased: a string constant (`'...'`, `$$...$$`, `$tag$...$tag$`)
//!   becomes [`STRING`], a numeric constant (`42`, `1.5`, `.5`, `1e-3`) becomes [`NUMBER`]. Neither
//!   byte can occur in an accepted statement outside a literal (see below), so the key is
//!   unambiguous.
//!
//! Everything else is copied verbatim: identifiers and keywords keep their case, quoted identifiers
//! (`"..."` with `""`) and parameters (`$1`) are kept, operators too. Two statements have the same
//! key exactly when PostgreSQL's lexer (scan.l, `standard_conforming_strings = on`) sees the same
//! tokens in them, up to the contents of their literals.
//!
//! The normalizer must agree with that lexer on where every literal and comment starts and ends.
//! Whenever that could depend on a setting or a server version, or the text is unusual, it gives up
//! (`None`: the statement is then checked every time, never cached):
//! - input over [`MAX_SQL_LEN`] bytes, or holding a NUL or a 0x01 byte anywhere;
//! - a backslash inside a standard string (`standard_conforming_strings = off` would end it elsewhere);
//! - a quote right after an identifier character: `E'...'`, `B'...'`, `X'...'`, `N'...'`, `date'x'`;
//!   `U&'...'` and `U&"..."` (any lone `u`/`U` identifier followed by `&`);
//! - a string constant followed, across whitespace and comments only, by another quote (PostgreSQL
//!   joins `'a'` and `'b'` separated by a newline into one constant);
//! - a dollar quote whose opening tag is not `$$` or `$tag$` with `tag` in `[A-Za-z_][A-Za-z0-9_]*`;
//! - an identifier containing `$` (`a$b$` is one identifier, not `a` and a dollar quote);
//! - a number followed by an identifier character or a dot (`123abc`, `0x1F`, `1_000`, `1..2`,
//!   `1.5.`) or with an incomplete exponent (`1e`, `1e+`); a parameter followed by an identifier
//!   character (`$1a`);
//! - a bare `$`, a backslash, a brace or a control character (other than tab, newline, carriage
//!   return and form feed) outside a literal: `\v` is whitespace only since PostgreSQL 16;
//! - an unterminated string, quoted identifier, dollar quote or comment.
//!
//! Bytes from 0x80 up are identifier characters outside literals (copied) and erased inside them,
//! as PostgreSQL does for any server encoding that is a superset of ASCII.

use memchr::memmem;

/// Statements longer than this are not normalized (never cached).
pub const MAX_SQL_LEN: usize = 64 * 1024;

/// What a string constant becomes in a key.
pub const STRING: u8 = 0x00;

/// What a numeric constant becomes in a key.
pub const NUMBER: u8 = 0x01;

#[inline]
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0c)
}

#[inline]
fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

#[inline]
fn is_ident_cont(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

/// Characters PostgreSQL returns as single-character tokens or as parts of operators.
#[inline]
fn is_punct(b: u8) -> bool {
    matches!(
        b,
        b',' | b'('
            | b')'
            | b'['
            | b']'
            | b'.'
            | b';'
            | b':'
            | b'+'
            | b'-'
            | b'*'
            | b'/'
            | b'%'
            | b'^'
            | b'<'
            | b'>'
            | b'='
            | b'~'
            | b'!'
            | b'@'
            | b'#'
            | b'&'
            | b'|'
            | b'`'
            | b'?'
    )
}

#[inline]
fn at(sql: &[u8], i: usize) -> Option<u8> {
    sql.get(i).copied()
}

/// The end of the ASCII digits starting at `i`.
#[inline]
fn digits_end(sql: &[u8], mut i: usize) -> usize {
    while at(sql, i).is_some_and(|b| b.is_ascii_digit()) {
        i += 1;
    }
    i
}

/// The end of a `--` comment starting at `i` (its newline is whitespace).
fn line_comment_end(sql: &[u8], i: usize) -> usize {
    let rest = sql.get(i..).unwrap_or_default();
    memchr::memchr2(b'\n', b'\r', rest).map_or(sql.len(), |n| i + n)
}

/// The end of a (nested) `/* */` comment starting at `i`; `None` when unterminated.
fn block_comment_end(sql: &[u8], i: usize) -> Option<usize> {
    let mut depth = 1usize;
    let mut j = i + 2;
    while let Some(b) = at(sql, j) {
        if b == b'/' && at(sql, j + 1) == Some(b'*') {
            depth += 1;
            j += 2;
        } else if b == b'*' && at(sql, j + 1) == Some(b'/') {
            depth -= 1;
            j += 2;
            if depth == 0 {
                return Some(j);
            }
        } else {
            j += 1;
        }
    }
    None
}

/// Whitespace and comments from `i`: the index of what follows them (`None`: unterminated comment).
fn skip_blank(sql: &[u8], mut i: usize) -> Option<usize> {
    loop {
        match at(sql, i) {
            Some(b) if is_space(b) => i += 1,
            Some(b'-') if at(sql, i + 1) == Some(b'-') => i = line_comment_end(sql, i),
            Some(b'/') if at(sql, i + 1) == Some(b'*') => i = block_comment_end(sql, i)?,
            _ => return Some(i),
        }
    }
}

/// The end of a quoted run starting at `i` (`quote` doubled inside stands for itself);
/// `None` when unterminated, or, for strings, at a backslash.
fn quoted_end(sql: &[u8], i: usize, quote: u8) -> Option<usize> {
    let mut j = i + 1;
    loop {
        let rest = sql.get(j..)?;
        let n =
            if quote == b'\'' { memchr::memchr2(b'\'', b'\\', rest)? } else { memchr::memchr(quote, rest)? };
        j += n;
        if at(sql, j) == Some(b'\\') {
            return None;
        }
        if at(sql, j + 1) == Some(quote) {
            j += 2;
        } else {
            return Some(j + 1);
        }
    }
}

/// The end of a numeric constant starting at `i` (a digit, or a dot before a digit).
fn number_end(sql: &[u8], i: usize) -> Option<usize> {
    let mut j = digits_end(sql, i);
    if at(sql, j) == Some(b'.') {
        if at(sql, j + 1) == Some(b'.') {
            return None; // `1..2`: PostgreSQL throws the dots back
        }
        j = digits_end(sql, j + 1);
    }
    if matches!(at(sql, j), Some(b'e' | b'E')) {
        let mut k = j + 1;
        if matches!(at(sql, k), Some(b'+' | b'-')) {
            k += 1;
        }
        if !at(sql, k).is_some_and(|b| b.is_ascii_digit()) {
            return None;
        }
        j = digits_end(sql, k);
    }
    match at(sql, j) {
        Some(b) if is_ident_cont(b) || b == b'.' => None,
        _ => Some(j),
    }
}

/// The end of a dollar-quoted string starting at `i` (`$`, not before a digit).
fn dollar_end(sql: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if at(sql, j).is_some_and(|b| b.is_ascii_alphabetic() || b == b'_') {
        while at(sql, j).is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
            j += 1;
        }
    }
    if at(sql, j) != Some(b'$') {
        return None; // a bare `$`, or a tag with other characters
    }
    let delimiter = sql.get(i..=j)?;
    let body = j + 1;
    let n = memmem::find(sql.get(body..)?, delimiter)?;
    Some(body + n + delimiter.len())
}

/// The cache key of `sql`'s shape, or `None` when it cannot be derived safely (see the module doc).
pub fn normalize(sql: &[u8]) -> Option<Vec<u8>> {
    if sql.len() > MAX_SQL_LEN || memchr::memchr2(STRING, NUMBER, sql).is_some() {
        return None;
    }
    let mut out = Vec::with_capacity(sql.len());
    let mut space = false;
    let mut i = 0;
    while let Some(c) = at(sql, i) {
        let next = at(sql, i + 1);
        if is_space(c) {
            space = true;
            i += 1;
            continue;
        }
        if c == b'-' && next == Some(b'-') {
            i = line_comment_end(sql, i);
            space = true;
            continue;
        }
        if c == b'/' && next == Some(b'*') {
            i = block_comment_end(sql, i)?;
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(b' ');
        }
        space = false;
        match c {
            b'\'' => {
                let end = quoted_end(sql, i, b'\'')?;
                // `'a'` newline `'b'` is one constant to PostgreSQL
                if at(sql, skip_blank(sql, end)?) == Some(b'\'') {
                    return None;
                }
                out.push(STRING);
                i = end;
            }
            b'"' => {
                let end = quoted_end(sql, i, b'"')?;
                out.extend_from_slice(sql.get(i..end)?);
                i = end;
            }
            b'$' if next.is_some_and(|b| b.is_ascii_digit()) => {
                let end = digits_end(sql, i + 1);
                if at(sql, end).is_some_and(is_ident_cont) {
                    return None;
                }
                out.extend_from_slice(sql.get(i..end)?);
                i = end;
            }
            b'$' => {
                i = dollar_end(sql, i)?;
                out.push(STRING);
            }
            b'0'..=b'9' => {
                i = number_end(sql, i)?;
                out.push(NUMBER);
            }
            b'.' if next == Some(b'.') => {
                // `..` is one token: `a..5` is `a`, `..`, `5`, not `a`, `.`, `.5`
                out.extend_from_slice(b"..");
                i += 2;
            }
            b'.' if next.is_some_and(|b| b.is_ascii_digit()) => {
                i = number_end(sql, i)?;
                out.push(NUMBER);
            }
            _ if is_ident_start(c) => {
                let mut end = i + 1;
                while at(sql, end).is_some_and(is_ident_cont) {
                    end += 1;
                }
                let ident = sql.get(i..end)?;
                if memchr::memchr(b'$', ident).is_some() {
                    return None;
                }
                match at(sql, end) {
                    Some(b'\'') => return None,
                    Some(b'&') if matches!(ident, b"u" | b"U") => return None,
                    _ => {}
                }
                out.extend_from_slice(ident);
                i = end;
            }
            _ if is_punct(c) => {
                out.push(c);
                i += 1;
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(sql: &str) -> Option<String> {
        normalize(sql.as_bytes())
            .map(|k| String::from_utf8(k).unwrap().replace('\0', "S").replace('\x01', "N"))
    }

    fn same(a: &str, b: &str) {
        assert!(normalize(a.as_bytes()).is_some(), "{a:?}");
        assert_eq!(normalize(a.as_bytes()), normalize(b.as_bytes()), "{a:?} vs {b:?}");
    }

    #[test]
    fn erases_literals_and_keeps_the_rest() {
        assert_eq!(
            key("SELECT abalance FROM pgbench_accounts WHERE aid = 48213;").as_deref(),
            Some("SELECT abalance FROM pgbench_accounts WHERE aid = N;")
        );
        assert_eq!(
            key("select 'it''s', 1.5, .5, 1e5, 1.5E-3, 2.").as_deref(),
            Some("select S, N, N, N, N, N")
        );
        assert_eq!(
            key(r#"select "Col""x" from "T" where a=$1"#).as_deref(),
            Some(r#"select "Col""x" from "T" where a=$1"#)
        );
        assert_eq!(key("select $$a'b$$, $fn$ x $$ y $fn$").as_deref(), Some("select S, S"));
        assert_eq!(key("select a::int[] <@ b, x->>'k'").as_deref(), Some("select a::int[] <@ b, x->>S"));
        assert_eq!(key("").as_deref(), Some(""));
        assert_eq!(key("  \t\n ").as_deref(), Some(""));
        same("select 1", "select 999999999999999999999");
        same("select 'a'", "select 'b''c'");
        same("select 'a'", "select $x$ anything $ $$ $x$");
        assert_ne!(normalize(b"select 1"), normalize(b"select '1'"), "kinds differ");
        assert_ne!(normalize(b"select -1"), normalize(b"select 1"));
        assert_ne!(normalize(b"select a"), normalize(b"select A"), "identifiers keep their case");
    }

    #[test]
    fn comments_are_whitespace() {
        assert_eq!(key("select /* a /* nested */ still */ 1 -- tail").as_deref(), Some("select N"));
        assert_eq!(key("select 1--c\n+2").as_deref(), Some("select N +N"));
        assert_eq!(key("select a/**/b").as_deref(), Some("select a b"));
        assert_eq!(key("select 1 -/**/- 2").as_deref(), Some("select N - - N"));
        assert_eq!(key("select 1 *--c\n 2").as_deref(), Some("select N * N"), "-- inside an operator");
        assert_eq!(key("select 1 +/*c*/ 2").as_deref(), Some("select N + N"));
        assert_eq!(key("select /*/ x */ 1").as_deref(), Some("select N"));
        assert_eq!(key("select /**/1").as_deref(), Some("select N"));
        assert_eq!(key("select 1 */ 2").as_deref(), Some("select N */ N"), "*/ outside a comment");
        assert_eq!(key("select '--', '/*'").as_deref(), Some("select S, S"));
        same("select\n\t1", "select /* c */ 2 -- x");
    }

    #[test]
    fn gives_up_on_what_depends_on_settings_or_versions() {
        for sql in [
            r"select 'a\' ; DROP TABLE t; --'",
            r"select E'\''",
            "select e'x'",
            "select U&'d\\0061t'",
            "select u&\"x\"",
            "select B'101'",
            "select x'1F'",
            "select N'x'",
            "select date'2020-01-01'",
            "select 'a'\n'b'",
            "select 'a' -- c\n 'b'",
            "select 'a' /* c */ 'b'",
            "select 'a' 'b'",
            "select a$b$ from t",
            "select $a$b",
            "select $1a",
            "select $1_0",
            "select $",
            "select $é$x$é$",
            "select $a b$ x $a b$",
            "select 123abc",
            "select 0x1F",
            "select 0b101",
            "select 1_000",
            "select 1..2",
            "select 1.5.",
            "select 1e",
            "select 1e+",
            "select 1.e-x",
            "select 1$",
            "select a \\ b",
            "select {1}",
            "select 1\x0b",
            "select 1\x01",
            "select '\x01'",
            "select 1\0",
            "select 'unterminated",
            "select \"unterminated",
            "select $$unterminated",
            "select $a$unterminated$b$",
            "select /* /* */ unterminated",
        ] {
            assert_eq!(normalize(sql.as_bytes()), None, "{sql:?}");
        }
        let long = format!("select '{}'", "x".repeat(MAX_SQL_LEN));
        assert_eq!(normalize(long.as_bytes()), None);
    }

    #[test]
    fn tricky_but_well_defined() {
        assert_eq!(key("select E 'x'").as_deref(), Some("select E S"), "E then a space is an identifier");
        assert_eq!(key("select t.5, a1.b2").as_deref(), Some("select tN, a1.b2"), "`.5` is the number");
        assert_eq!(key("select 'a''b' || 'c'").as_deref(), Some("select S || S"));
        assert_eq!(key("select colu&\"x\"").as_deref(), Some("select colu&\"x\""));
        assert_eq!(key("select $a$ $b$ $a$").as_deref(), Some("select S"));
        assert_eq!(key("select $a$x$ab$a$").as_deref(), Some("select S"));
        assert_eq!(key("select $$ '\\' $$").as_deref(), Some("select S"), "no escapes in dollar quotes");
        assert_eq!(key("select 'a'\n, 'b'").as_deref(), Some("select S , S"));
        assert_eq!(key("select 'x'::text").as_deref(), Some("select S::text"));
        assert_eq!(key("select 1.e5").as_deref(), Some("select N"));
        assert_eq!(
            key("select a..5, a...5").as_deref(),
            Some("select a..N, a..N"),
            "`..` is a token, `.5` a number"
        );
        assert_eq!(normalize("select 'é', é".as_bytes()), Some("select \0, é".as_bytes().to_vec()));
        assert_eq!(normalize(b"select '\xff', \xfe"), Some(b"select \0, \xfe".to_vec()), "not UTF-8");
        assert_eq!(key("select 1;select 2").as_deref(), Some("select N;select N"));
    }
}
