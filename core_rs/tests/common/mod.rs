//! Wire builders shared by the policy and hold tests: frontend and backend messages as bytes.
#![allow(dead_code, clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use hoopgw_core::pg::messages::bind::Bind;
use hoopgw_core::pg::messages::command_complete::CommandComplete;
use hoopgw_core::pg::messages::data_row::DataRow;
use hoopgw_core::pg::messages::error_notice::{ErrorResponse, Fields};
use hoopgw_core::pg::messages::execute::Execute;
use hoopgw_core::pg::messages::parse::Parse;
use hoopgw_core::pg::messages::query::Query;
use hoopgw_core::pg::messages::ready_for_query::ReadyForQuery;
use hoopgw_core::pg::messages::ToBytes;
use hoopgw_core::pg::policy::error_response;

pub const READ: u32 = 1;
pub const WRITE: u32 = 2;

pub fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// The messages encoded back to back.
pub fn cat(msgs: &[&dyn ToBytes]) -> Bytes {
    let mut out = BytesMut::new();
    for m in msgs {
        out.extend_from_slice(&m.to_bytes().unwrap());
    }
    out.freeze()
}

pub fn query(sql: &str) -> Query {
    Query { sql: b(sql) }
}
pub fn parse(name: &str, sql: &str) -> Parse {
    Parse { name: b(name), sql: b(sql), param_types: vec![] }
}
pub fn bind(portal: &str, stmt: &str) -> Bind {
    Bind {
        portal: b(portal),
        statement: b(stmt),
        param_formats: vec![],
        params: vec![],
        result_formats: vec![],
    }
}
pub fn execute(portal: &str) -> Execute {
    Execute { portal: b(portal), max_rows: 0 }
}
pub fn tag(t: &str) -> CommandComplete {
    CommandComplete { tag: b(t) }
}
pub fn row(v: &str) -> DataRow {
    DataRow { values: vec![Some(b(v))] }
}
pub fn ready(s: u8) -> ReadyForQuery {
    ReadyForQuery::new(s).unwrap()
}
pub fn server_error(code: &str, msg: &str) -> ErrorResponse {
    ErrorResponse(Fields::new("ERROR", code, msg, None, None))
}
/// The ErrorResponse the tests' checks deny with.
pub fn denied() -> Bytes {
    error_response("42501", "denied by policy")
}
