//! Column rules: `table.column` and `schema.table.column` globs with `*` and `?`.

/// Whether `name` matches the glob `pat`: `*` is any run of characters (also empty), `?` exactly one
/// character, anything else itself (case-sensitive). Linear backtracking on the last `*`: no
/// recursion, no allocation.
pub(crate) fn glob_match(pat: &str, name: &str) -> bool {
    let (p, s) = (pat.as_bytes(), name.as_bytes());
    let (mut pi, mut si) = (0usize, 0usize);
    // position in the pattern after the last `*`, and where in `name` that `*` stopped matching
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                pi += 1;
                star = Some((pi, si));
                continue;
            }
            Some(b'?') => {
                pi += 1;
                si += char_len(s, si);
                continue;
            }
            Some(c) if s.get(si) == Some(c) => {
                pi += 1;
                si += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, ss)) => {
                // let the last `*` eat one more character, and retry after it
                let next = ss + char_len(s, ss);
                star = Some((sp, next));
                pi = sp;
                si = next;
            }
            None => return false,
        }
    }
    while p.get(pi) == Some(&b'*') {
        pi += 1;
    }
    pi == p.len()
}

/// Length in bytes of the UTF-8 character starting at `s[i]` (1 for anything unexpected).
fn char_len(s: &[u8], i: usize) -> usize {
    match s.get(i) {
        Some(&b) if b >= 0xF0 => 4,
        Some(&b) if b >= 0xE0 => 3,
        Some(&b) if b >= 0xC0 => 2,
        _ => 1,
    }
}

/// One parsed column glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ColumnGlob {
    /// None for `table.column` (any schema).
    schema: Option<String>,
    table: String,
    column: String,
}

impl ColumnGlob {
    /// Parses `table.column` or `schema.table.column`; every part non-empty.
    pub(crate) fn parse(glob: &str) -> Result<Self, String> {
        let parts: Vec<&str> = glob.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "column rule {glob:?}: empty part (expected table.column or schema.table.column)"
            ));
        }
        match parts.as_slice() {
            [table, column] => {
                Ok(Self { schema: None, table: (*table).to_string(), column: (*column).to_string() })
            }
            [schema, table, column] => Ok(Self {
                schema: Some((*schema).to_string()),
                table: (*table).to_string(),
                column: (*column).to_string(),
            }),
            _ => Err(format!("column rule {glob:?}: expected table.column or schema.table.column")),
        }
    }

    pub(crate) fn matches(&self, schema: &str, table: &str, column: &str) -> bool {
        glob_match(&self.column, column)
            && glob_match(&self.table, table)
            && match &self.schema {
                Some(s) => glob_match(s, schema),
                None => true,
            }
    }

    pub(crate) fn matches_label(&self, label: &str) -> bool {
        glob_match(&self.column, label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_basics() {
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "anything at all"));
        assert!(glob_match("abc", "abc"));
        assert!(!glob_match("abc", "abd"));
        assert!(!glob_match("abc", "ab"));
        assert!(!glob_match("ab", "abc"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("a*c", "ac"));
        assert!(glob_match("a*c", "abbbc"));
        assert!(!glob_match("a*c", "abbbd"));
        assert!(glob_match("*_number", "account_number"));
        assert!(!glob_match("*_number", "account_numbers"));
        assert!(glob_match("acc*", "account"));
        assert!(glob_match("*ou*", "account"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(glob_match("a*b*c", "abcbc"));
        assert!(!glob_match("a*b*c", "acb"));
        assert!(glob_match("**", "x"));
        assert!(glob_match("?*", "x"));
        assert!(!glob_match("?*", ""));
        assert!(glob_match("*?", "xy"));
    }

    #[test]
    fn glob_is_case_sensitive() {
        assert!(!glob_match("Name", "name"));
        assert!(glob_match("name", "name"));
    }

    #[test]
    fn glob_unicode_question_mark_is_one_char() {
        assert!(glob_match("caf?", "café"));
        assert!(glob_match("?x", "éx"));
        assert!(!glob_match("??x", "éx"));
        assert!(glob_match("*é", "café"));
        assert!(glob_match("c*é*", "cafébar"));
    }

    #[test]
    fn glob_pathological_is_fast() {
        let name = "a".repeat(10_000);
        let pat = format!("{}b", "*a".repeat(50));
        assert!(!glob_match(&pat, &name));
    }

    #[test]
    fn column_glob_parse() {
        let g = ColumnGlob::parse("*.account_number").unwrap();
        assert!(g.matches("public", "accounts", "account_number"));
        assert!(g.matches("other", "x", "account_number"));
        assert!(!g.matches("public", "accounts", "account"));
        assert!(g.matches_label("account_number"));

        let g = ColumnGlob::parse("public.customers.full_name").unwrap();
        assert!(g.matches("public", "customers", "full_name"));
        assert!(!g.matches("private", "customers", "full_name"));
        assert!(!g.matches("public", "customer", "full_name"));
        assert!(g.matches_label("full_name"));

        for bad in ["", "a", ".a", "a.", "a..b", "a.b.c.d", "a.b."] {
            assert!(ColumnGlob::parse(bad).is_err(), "{bad:?}");
        }
    }
}
