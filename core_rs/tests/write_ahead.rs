//! Write-ahead audit: the statements a client read carries that change data (or whose classes are
//! unknown) come out as intents, masked like statement records, before their bytes go upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;
use common::*;

use bytes::Bytes;
use hoopgw_core::pg::messages::function_call::FunctionCall;
use hoopgw_core::pg::messages::sync_flush_terminate::Sync;
use hoopgw_core::pg::messages::ToBytes;
use hoopgw_core::pg::{Policy, Session, Verdict};

const MAX: usize = 1 << 16;
const SESSION: u32 = 64;

/// select: READ; begin/set: SESSION; insert/update/delete: WRITE; all allowed.
fn policy() -> Policy {
    Policy::new(
        None,
        Box::new(|sql: Option<&[u8]>, cached: Option<u32>, _name: Option<&[u8]>| {
            let Some(sql) = sql else {
                return Ok(Verdict {
                    mask: cached.unwrap_or(WRITE),
                    cacheable: false,
                    error: None,
                    hold: false,
                });
            };
            let sql = String::from_utf8_lossy(sql).to_lowercase();
            let mask = match sql.split_whitespace().next().unwrap_or_default() {
                "select" => READ,
                "begin" | "set" | "commit" => SESSION,
                _ => WRITE,
            };
            Ok(Verdict { mask, cacheable: false, error: None, hold: false })
        }),
    )
}

fn session(wal: u32) -> Session {
    let mut s = Session::new(MAX);
    s.set_policy(Some(policy()), u32::MAX);
    s.set_write_ahead(wal);
    s
}

fn feed(s: &mut Session, data: &Bytes) -> Bytes {
    let (fwd, terminate) = s.feed_client(data, 1).unwrap();
    assert!(!terminate);
    fwd.to_bytes(data)
}

#[test]
fn writes_are_intents_reads_and_session_statements_are_not() {
    let mut s = session(!(READ | SESSION));
    let data = cat(&[&query("begin"), &query("select 1"), &query("update t set a = 1"), &query("commit")]);
    assert_eq!(feed(&mut s, &data), data, "intents never change what is forwarded");
    let intents = s.take_intents();
    assert_eq!(intents.iter().map(|i| i.sql.as_str()).collect::<Vec<_>>(), ["update t set a = 1"]);
    assert_eq!(intents[0].kind.as_str(), "query");
    assert!(s.take_intents().is_empty(), "taken once");
}

#[test]
fn off_by_default_and_with_a_zero_mask() {
    for wal in [None, Some(0)] {
        let mut s = Session::new(MAX);
        s.set_policy(Some(policy()), u32::MAX);
        if let Some(mask) = wal {
            s.set_write_ahead(mask);
        }
        feed(&mut s, &query("delete from t").to_bytes().unwrap());
        assert!(s.take_intents().is_empty());
    }
}

#[test]
fn without_a_policy_every_query_is_an_intent() {
    let mut s = Session::new(MAX);
    s.set_write_ahead(WRITE);
    feed(&mut s, &query("select 1").to_bytes().unwrap());
    assert_eq!(s.take_intents().len(), 1, "unknown classes are recorded first");
}

#[test]
fn an_execute_is_an_intent_with_its_params_and_a_parse_alone_is_not() {
    let mut s = session(WRITE);
    let parse_only = cat(&[&parse("ins", "insert into t values ($1)"), &Sync]);
    feed(&mut s, &parse_only);
    assert!(s.take_intents().is_empty(), "a Parse changes nothing");
    let mut b = bind("", "ins");
    b.params = vec![Some(Bytes::from_static(b"42"))];
    let run = cat(&[&b, &execute(""), &Sync]);
    feed(&mut s, &run);
    let intents = s.take_intents();
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0].kind.as_str(), "execute");
    assert_eq!(intents[0].sql, "insert into t values ($1)");
    assert_eq!(intents[0].params, Some(vec![Some("42".to_string())]));
    // a read prepared statement is not
    feed(&mut s, &cat(&[&parse("sel", "select $1"), &bind("", "sel"), &execute(""), &Sync]));
    assert!(s.take_intents().is_empty());
}

#[test]
fn an_execute_of_a_statement_prepared_elsewhere_and_a_function_call_are_intents() {
    let mut s = session(WRITE);
    feed(&mut s, &cat(&[&bind("", "sql_prepared"), &execute(""), &Sync]));
    assert_eq!(s.take_intents().len(), 1, "classes unknown: recorded first");
    let fc = FunctionCall { oid: 1234, arg_formats: vec![], args: vec![], result_format: 0 };
    feed(&mut s, &fc.to_bytes().unwrap());
    let intents = s.take_intents();
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0].kind.as_str(), "function");
}

#[test]
fn intents_split_across_reads_come_with_the_read_that_completes_the_message() {
    let mut s = session(WRITE);
    let data = query("insert into t values (1)").to_bytes().unwrap();
    let (a, b) = data.split_at(7);
    feed(&mut s, &Bytes::copy_from_slice(a));
    assert!(s.take_intents().is_empty());
    feed(&mut s, &Bytes::copy_from_slice(b));
    assert_eq!(s.take_intents().len(), 1);
}
