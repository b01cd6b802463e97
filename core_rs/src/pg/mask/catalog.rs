//! Names of tables and types as the gateway looked them up, per session.

use std::collections::HashMap;

/// Object ids below this are built in (PostgreSQL's `FirstNormalObjectId`).
const FIRST_NORMAL_OID: u32 = 16384;

/// How values of a type may be masked without producing something the type cannot parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeKind {
    /// Strings (text, varchar, char, name, unknown, user types of the string category): any
    /// masked text is a valid value.
    Text,
    /// JSON: masked text is valid inside JSON strings only.
    Json,
    /// Text containers (xml, arrays of text): detectors may rewrite inside, whole-value rules
    /// cannot produce a valid value.
    Container,
    /// Anything else (numbers, dates, bytea, ...): a value that needs masking becomes NULL.
    Other,
}

impl TypeKind {
    /// The kind of a built-in type, `None` for a type that must be looked up.
    pub fn builtin(oid: u32) -> Option<Self> {
        if oid >= FIRST_NORMAL_OID {
            return None;
        }
        Some(match oid {
            // text, varchar, bpchar, name, "char", unknown
            25 | 1043 | 1042 | 19 | 18 | 705 => Self::Text,
            // json, jsonb
            114 | 3802 => Self::Json,
            // xml, text[], varchar[], bpchar[], name[]
            142 | 1009 | 1015 | 1014 | 1003 => Self::Container,
            _ => Self::Other,
        })
    }

    /// The kind of a user type from its `pg_type.typcategory`.
    pub fn from_category(category: char) -> Self {
        if category == 'S' {
            Self::Text
        } else {
            Self::Other
        }
    }
}

/// A table's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub schema: String,
    pub name: String,
    /// Column names by attribute number.
    pub columns: HashMap<i16, String>,
}

/// What a session knows of the catalog. A looked-up OID that does not exist (a table dropped
/// meanwhile) is remembered as `None` so that it is not asked for again.
#[derive(Debug, Default)]
pub struct Catalog {
    tables: HashMap<u32, Option<TableInfo>>,
    types: HashMap<u32, TypeKind>,
    /// Tables looked up a second time (a column appeared that the first look-up did not know).
    refreshed: std::collections::HashSet<u32>,
}

impl Catalog {
    pub fn has_table(&self, oid: u32) -> bool {
        self.tables.contains_key(&oid)
    }

    pub fn table(&self, oid: u32) -> Option<&TableInfo> {
        self.tables.get(&oid).and_then(Option::as_ref)
    }

    pub fn type_kind(&self, oid: u32) -> Option<TypeKind> {
        TypeKind::builtin(oid).or_else(|| self.types.get(&oid).copied())
    }

    pub fn add_table(&mut self, oid: u32, info: Option<TableInfo>) {
        if self.tables.insert(oid, info).is_some() {
            self.refreshed.insert(oid);
        }
    }

    /// Whether `attnum` of table `oid` is unknown although the table is known, and the table has
    /// not been looked up again yet (columns added since the first look-up).
    pub fn stale_column(&self, oid: u32, attnum: i16) -> bool {
        attnum > 0
            && !self.refreshed.contains(&oid)
            && self.table(oid).is_some_and(|t| !t.columns.contains_key(&attnum))
    }

    pub fn add_type(&mut self, oid: u32, kind: TypeKind) {
        self.types.insert(oid, kind);
    }
}
