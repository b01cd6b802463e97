//! Write-ahead audit: the statements a client read carries that change data (or whose classes are
//! unknown) come out as intents, masked like statement records, with whether the read must wait
//! for them (strict) and whether it must wait for every intent in flight (a barrier).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;
use common::*;

use bytes::Bytes;
use hoopgw_core::pg::messages::function_call::FunctionCall;
use hoopgw_core::pg::messages::sync_flush_terminate::Sync;
use hoopgw_core::pg::messages::ToBytes;
use hoopgw_core::pg::{Policy, Session, Verdict};

const MAX: usize = 1 << 16;
const DDL: u32 = 8;
const SESSION: u32 = 64;
const CONTAINED: u32 = READ | WRITE;

/// select: READ; begin/set/commit: SESSION; create: DDL; anything else: WRITE; all allowed.
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
                "create" => DDL,
                _ => WRITE,
            };
            Ok(Verdict { mask, cacheable: false, error: None, hold: false })
        }),
    )
}

fn session(wal: u32) -> Session {
    let mut s = Session::new(MAX);
    s.set_policy(Some(policy()), u32::MAX);
    s.set_write_ahead(wal, CONTAINED);
    s
}

fn feed(s: &mut Session, data: &Bytes) -> Bytes {
    let (fwd, terminate) = s.feed_client(data, 1).unwrap();
    assert!(!terminate);
    fwd.to_bytes(data)
}

fn q(sql: &str) -> Bytes {
    query(sql).to_bytes().unwrap()
}

/// The SQL of the intents noted, whether strict, whether a barrier.
fn noted(s: &mut Session) -> (Vec<String>, bool, bool) {
    let (intents, strict, barrier) = s.take_intents();
    (intents.into_iter().map(|i| i.sql).collect(), strict, barrier)
}

fn answer(s: &mut Session, tag_text: &str, status: u8) {
    let data = cat(&[&tag(tag_text), &ready(status)]);
    s.feed_server(&data, 2).unwrap();
}

fn none() -> (Vec<String>, bool, bool) {
    (vec![], false, false)
}

#[test]
fn writes_are_intents_reads_and_session_statements_are_not() {
    let mut s = session(!(READ | SESSION));
    let data = cat(&[&query("begin"), &query("select 1"), &query("update t set a = 1"), &query("commit")]);
    assert_eq!(feed(&mut s, &data), data, "intents never change what is forwarded");
    let (intents, strict, barrier) = s.take_intents();
    assert_eq!(intents.iter().map(|i| i.sql.as_str()).collect::<Vec<_>>(), ["update t set a = 1"]);
    assert_eq!(intents[0].kind.as_str(), "query");
    assert!(strict, "not known to be inside a transaction block");
    assert!(barrier, "begin and commit may end a transaction");
    assert_eq!(noted(&mut s), none(), "taken once");
}

#[test]
fn off_by_default_and_with_a_zero_mask() {
    for wal in [None, Some(0)] {
        let mut s = Session::new(MAX);
        s.set_policy(Some(policy()), u32::MAX);
        if let Some(mask) = wal {
            s.set_write_ahead(mask, CONTAINED);
        }
        feed(&mut s, &q("delete from t"));
        assert_eq!(noted(&mut s), none());
    }
}

#[test]
fn without_a_policy_every_query_is_an_intent() {
    let mut s = Session::new(MAX);
    s.set_write_ahead(WRITE, CONTAINED);
    feed(&mut s, &q("select 1"));
    assert_eq!(noted(&mut s), (vec!["select 1".into()], true, true), "unknown classes are recorded first");
}

#[test]
fn an_execute_is_an_intent_with_its_params_and_a_parse_alone_is_not() {
    let mut s = session(WRITE);
    feed(&mut s, &cat(&[&parse("ins", "insert into t values ($1)"), &Sync]));
    assert_eq!(noted(&mut s), none(), "a Parse changes nothing");
    let mut b = bind("", "ins");
    b.params = vec![Some(Bytes::from_static(b"42"))];
    feed(&mut s, &cat(&[&b, &execute(""), &Sync]));
    let (intents, strict, _) = s.take_intents();
    assert!(strict, "an implicit transaction commits at the Sync");
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0].kind.as_str(), "execute");
    assert_eq!(intents[0].sql, "insert into t values ($1)");
    assert_eq!(intents[0].params, Some(vec![Some("42".to_string())]));
    // a read prepared statement is not
    feed(&mut s, &cat(&[&parse("sel", "select $1"), &bind("", "sel"), &execute(""), &Sync]));
    assert_eq!(noted(&mut s), none());
}

#[test]
fn an_execute_of_a_statement_prepared_elsewhere_and_a_function_call_are_intents() {
    let mut s = session(WRITE);
    feed(&mut s, &cat(&[&bind("", "sql_prepared"), &execute(""), &Sync]));
    let (intents, strict, barrier) = s.take_intents();
    assert_eq!((intents.len(), strict, barrier), (1, true, true), "classes unknown: recorded first");
    let fc = FunctionCall { oid: 1234, arg_formats: vec![], args: vec![], result_format: 0 };
    feed(&mut s, &fc.to_bytes().unwrap());
    let (intents, strict, barrier) = s.take_intents();
    assert!(strict && barrier);
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0].kind.as_str(), "function");
}

#[test]
fn intents_split_across_reads_come_with_the_read_that_completes_the_message() {
    let mut s = session(WRITE);
    let data = q("insert into t values (1)");
    let (a, b) = data.split_at(7);
    feed(&mut s, &Bytes::copy_from_slice(a));
    assert_eq!(noted(&mut s), none());
    feed(&mut s, &Bytes::copy_from_slice(b));
    assert_eq!(noted(&mut s).0.len(), 1);
}

#[test]
fn inside_a_transaction_block_plain_writes_run_while_recorded_and_commit_is_a_barrier() {
    let mut s = session(WRITE | DDL);
    feed(&mut s, &q("begin"));
    assert_eq!(noted(&mut s), (vec![], false, true), "begin is a barrier (nothing in flight: no wait)");
    answer(&mut s, "BEGIN", b'T');
    feed(&mut s, &q("update t set a = 1"));
    assert_eq!(noted(&mut s), (vec!["update t set a = 1".into()], false, false), "deferrable");
    answer(&mut s, "UPDATE 1", b'T');
    feed(&mut s, &q("select a from t"));
    assert_eq!(noted(&mut s), none(), "a read inside the block is no barrier");
    answer(&mut s, "SELECT 1", b'T');
    feed(&mut s, &q("create table x (a int)"));
    assert_eq!(noted(&mut s), (vec!["create table x (a int)".into()], true, true), "DDL is strict");
    answer(&mut s, "CREATE TABLE", b'T');
    feed(&mut s, &q("commit"));
    assert_eq!(noted(&mut s), (vec![], false, true), "commit waits for what is in flight");
    answer(&mut s, "COMMIT", b'I');
    feed(&mut s, &q("update t set a = 2"));
    assert!(noted(&mut s).1, "autocommit again: strict");
}

#[test]
fn a_block_status_is_trusted_only_with_nothing_in_flight() {
    let mut s = session(WRITE);
    feed(&mut s, &q("begin"));
    answer(&mut s, "BEGIN", b'T');
    // pipelined: the commit ends the block before the second update runs
    let data = cat(&[&query("update t set a = 1"), &query("commit"), &query("update t set a = 2")]);
    feed(&mut s, &data);
    let (intents, strict, barrier) = s.take_intents();
    assert_eq!(intents.len(), 2);
    assert!(strict && barrier, "the update after the commit runs on its own: strict");
    // the first update's ReadyForQuery (T) comes back while the rest is in flight: still unsure
    answer(&mut s, "UPDATE 1", b'T');
    feed(&mut s, &q("update t set a = 3"));
    assert!(noted(&mut s).1, "the block status is stale while requests are in flight");
}

#[test]
fn a_parse_refused_for_an_existing_name_keeps_the_statement_the_server_has() {
    use hoopgw_core::pg::messages::complete::{BindComplete, ParseComplete};
    let mut s = session(WRITE);
    feed(&mut s, &cat(&[&parse("s3", "update t set a = 1"), &Sync]));
    s.feed_server(&cat(&[&ParseComplete, &ready(b'I')]), 2).unwrap();
    // the same name again: the server refuses it (42P05) and keeps the first
    feed(&mut s, &cat(&[&parse("s3", "select 1"), &Sync]));
    s.feed_server(
        &cat(&[&server_error("42P05", "prepared statement \"s3\" already exists"), &ready(b'I')]),
        3,
    )
    .unwrap();
    feed(&mut s, &cat(&[&bind("", "s3"), &execute(""), &Sync]));
    let (intents, strict, _) = s.take_intents();
    assert_eq!(intents.iter().map(|i| i.sql.as_str()).collect::<Vec<_>>(), ["update t set a = 1"]);
    assert!(strict);
    let (_, done) = s.feed_server(&cat(&[&BindComplete, &tag("UPDATE 1"), &ready(b'I')]), 4).unwrap();
    assert_eq!(done.iter().map(|d| d.sql.as_str()).collect::<Vec<_>>(), ["update t set a = 1"]);
}
