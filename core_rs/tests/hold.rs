//! Holding a statement for a decision: nothing from the held message on is forwarded until the
//! caller releases it (forwarded as allowed) or rejects it (answered like a denial); what the
//! client sent meanwhile then goes through the normal path, in order.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;
use common::*;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hoopgw_core::pg::messages::complete::{BindComplete, ParseComplete};
use hoopgw_core::pg::messages::function_call::FunctionCall;
use hoopgw_core::pg::messages::parameter_status::ParameterStatus;
use hoopgw_core::pg::messages::sync_flush_terminate::{Flush, Sync, Terminate};
use hoopgw_core::pg::messages::ToBytes;
use hoopgw_core::pg::policy::{error_response, CHECK_FAILED_MESSAGE};
use hoopgw_core::pg::{HeldKind, Policy, ProtocolError, Session, Verdict};

const MAX: usize = 1 << 16;
const DDL: u32 = 4;
fn rejected() -> Bytes {
    error_response("42501", "approval denied")
}
fn answer(sql_tag: &str, status: u8) -> Bytes {
    cat(&[&tag(sql_tag), &ready(status)])
}

/// select, begin, commit: READ (allowed); insert/update/delete: WRITE (held); anything else: DDL (denied). A
/// Bind (no SQL, a name) of a WRITE statement or of one the session did not parse is held; a
/// FunctionCall is held. Records the SQL (or `bind NAME` / `function`) of each call.
#[derive(Clone, Default)]
struct Approver {
    calls: Arc<Mutex<Vec<String>>>,
}

impl Approver {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn policy(&self) -> Policy {
        let calls = Arc::clone(&self.calls);
        Policy::new(
            None,
            Box::new(move |sql: Option<&[u8]>, cached: Option<u32>, name: Option<&[u8]>| {
                let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
                let Some(sql) = sql else {
                    let call = name.map_or("function".into(), |n| format!("bind {}", text(n)));
                    calls.lock().unwrap().push(call);
                    let mask = cached.unwrap_or(WRITE);
                    return Ok(Verdict { mask, cacheable: false, error: None, hold: mask & WRITE != 0 });
                };
                let sql = text(sql).to_lowercase();
                calls.lock().unwrap().push(sql.clone());
                let first = sql.split_whitespace().next().unwrap_or_default().to_string();
                let (mask, error, hold) = match first.as_str() {
                    "select" | "begin" | "commit" => (READ, None, false),
                    "insert" | "update" | "delete" => (WRITE, None, true),
                    // a denial wins over a hold
                    _ => (DDL, Some(denied()), true),
                };
                Ok(Verdict { mask, cacheable: false, error, hold })
            }),
        )
    }
}

fn session() -> (Session, Approver) {
    let approver = Approver::default();
    let mut s = Session::new(MAX);
    s.set_policy(Some(approver.policy()), READ);
    (s, approver)
}

/// Feeds the client read; returns (forwarded bytes, immediate reply).
fn client(s: &mut Session, data: &Bytes) -> (Bytes, Option<Bytes>) {
    let (fwd, terminate) = s.feed_client(data, 1).unwrap();
    assert!(!terminate);
    (fwd.to_bytes(data), s.take_reply())
}

fn release(s: &mut Session) -> (Bytes, Option<Bytes>) {
    let (fwd, terminate) = s.release(5).unwrap();
    assert!(!terminate);
    (fwd, s.take_reply())
}

fn reject(s: &mut Session) -> (Bytes, Option<Bytes>) {
    let (fwd, terminate) = s.reject(rejected(), 5).unwrap();
    assert!(!terminate);
    (fwd, s.take_reply())
}

/// Feeds the server read; returns what goes to the client and the SQL of completed statements.
fn server(s: &mut Session, data: &Bytes) -> (Bytes, Vec<String>) {
    let (fwd, done) = s.feed_server(data, 9).unwrap();
    (fwd.to_bytes(data), done.into_iter().map(|d| d.sql).collect())
}

#[test]
fn a_lone_held_query_is_not_forwarded_and_released_later() {
    let (mut s, approver) = session();
    let q = cat(&[&query("insert into t values (1)")]);
    assert_eq!(client(&mut s, &q), (Bytes::new(), None));
    let held = s.held().unwrap();
    assert_eq!(
        (held.kind, held.sql.clone(), held.name.clone()),
        (HeldKind::Query, Some(b("insert into t values (1)")), None)
    );
    assert_eq!((s.pending(), s.held_bytes()), (0, q.len()));
    assert_eq!(release(&mut s), (q, None));
    assert!(s.held().is_none());
    assert_eq!(s.pending(), 1);
    assert_eq!(approver.calls(), ["insert into t values (1)"], "released without a second check");
    let (out, done) = server(&mut s, &answer("INSERT 0 1", b'I'));
    assert_eq!((out, done), (answer("INSERT 0 1", b'I'), vec!["insert into t values (1)".to_string()]));
    // nothing held: release and reject do nothing
    assert_eq!(release(&mut s), (Bytes::new(), None));
    assert_eq!(reject(&mut s), (Bytes::new(), None));
}

#[test]
fn pipelined_messages_wait_behind_the_held_one_and_go_in_order() {
    let (mut s, approver) = session();
    let wire = cat(&[&query("select 1"), &query("update t set a = 1 where id = 2"), &query("select 2")]);
    assert_eq!(client(&mut s, &wire), (cat(&[&query("select 1")]), None));
    // more reads while holding: kept, not checked, not forwarded
    assert_eq!(client(&mut s, &cat(&[&query("select 3")])), (Bytes::new(), None));
    assert_eq!(approver.calls().len(), 2);
    // the server direction flows meanwhile: the answer to select 1, asynchronous messages
    let status = ParameterStatus { name: b("application_name"), value: b("x") };
    let first = cat(&[&row("1"), &tag("SELECT 1"), &ready(b'I'), &status]);
    assert_eq!(server(&mut s, &first), (first.clone(), vec!["select 1".to_string()]));
    assert_eq!(s.pending(), 0);
    // release: the held query, then the rest, checked as usual
    let (fwd, reply) = release(&mut s);
    assert_eq!(
        fwd,
        cat(&[&query("update t set a = 1 where id = 2"), &query("select 2"), &query("select 3")])
    );
    assert_eq!(reply, None);
    assert_eq!(approver.calls()[2..], ["select 2", "select 3"]);
    assert_eq!(s.pending(), 3);
    let answers = cat(&[
        &tag("UPDATE 1"),
        &ready(b'I'),
        &tag("SELECT 1"),
        &ready(b'I'),
        &tag("SELECT 1"),
        &ready(b'I'),
    ]);
    let (out, done) = server(&mut s, &answers);
    assert_eq!(out, answers);
    assert_eq!(done, ["update t set a = 1 where id = 2", "select 2", "select 3"]);
}

#[test]
fn a_rejected_query_is_answered_at_its_place_and_the_rest_proceeds() {
    let (mut s, _) = session();
    let wire = cat(&[&query("select 1"), &query("delete from t where id = 1"), &query("select 2")]);
    client(&mut s, &wire);
    // the server has not answered select 1 yet: the rejection waits for it
    assert_eq!(reject(&mut s), (cat(&[&query("select 2")]), None));
    let first = answer("SELECT 1", b'T');
    let second = answer("SELECT 1", b'T');
    let (out, done) = server(&mut s, &[&first[..], &second[..]].concat().into());
    let expected = [&first[..], &rejected()[..], &ready(b'T').to_bytes().unwrap()[..], &second[..]].concat();
    assert_eq!(out, expected);
    assert_eq!(done, ["select 1", "select 2"], "the rejected query is no statement");
    assert_eq!(s.pending(), 0);

    // nothing pending: the answer comes back at once, with the latest transaction status
    let (mut s, _) = session();
    client(&mut s, &cat(&[&query("select 1")]));
    server(&mut s, &answer("SELECT 1", b'T'));
    client(&mut s, &cat(&[&query("delete from t where id = 1"), &query("select 2")]));
    let (fwd, reply) = reject(&mut s);
    assert_eq!(fwd, cat(&[&query("select 2")]));
    assert_eq!(reply, Some([&rejected()[..], &ready(b'T').to_bytes().unwrap()[..]].concat().into()));
}

#[test]
fn a_held_parse_is_held_with_its_batch_and_released_as_a_unit() {
    let (mut s, approver) = session();
    let wire = cat(&[
        &parse("", "select $1"),
        &bind("", ""),
        &execute(""),
        &parse("", "delete from t where id = $1"),
        &bind("", ""),
        &execute(""),
        &Sync,
        &query("select 9"),
    ]);
    let (fwd, reply) = client(&mut s, &wire);
    // the messages of the batch before the held Parse were already forwarded
    assert_eq!(fwd, cat(&[&parse("", "select $1"), &bind("", ""), &execute("")]));
    assert_eq!(reply, None);
    let held = s.held().unwrap();
    assert_eq!((held.kind, held.name.clone()), (HeldKind::Parse, Some(Bytes::new())));
    let (fwd, reply) = release(&mut s);
    assert_eq!(
        fwd,
        cat(&[
            &parse("", "delete from t where id = $1"),
            &bind("", ""),
            &execute(""),
            &Sync,
            &query("select 9")
        ])
    );
    assert_eq!(reply, None);
    // the Bind of the released statement was not checked (it would have been held again)
    assert_eq!(approver.calls(), ["select $1", "delete from t where id = $1", "select 9"]);
    let answers = cat(&[
        &ParseComplete,
        &BindComplete,
        &tag("SELECT 1"),
        &ParseComplete,
        &BindComplete,
        &tag("DELETE 1"),
        &ready(b'I'),
        &tag("SELECT 1"),
        &ready(b'I'),
    ]);
    let (out, done) = server(&mut s, &answers);
    assert_eq!(out, answers);
    assert_eq!(done, ["select $1", "delete from t where id = $1", "select 9"]);
    assert_eq!(s.pending(), 0);
    assert_eq!(s.tracked_names().0, 1);
}

#[test]
fn a_rejected_parse_drops_its_batch_up_to_the_sync() {
    let (mut s, approver) = session();
    let wire = cat(&[
        &parse("", "select $1"),
        &bind("", ""),
        &execute(""),
        &parse("s1", "insert into t values ($1)"),
        &bind("", "s1"),
        &execute(""),
        &Sync,
        &query("select 9"),
    ]);
    client(&mut s, &wire);
    let (fwd, reply) = reject(&mut s);
    assert_eq!(fwd, cat(&[&Sync, &query("select 9")]));
    assert_eq!(reply, None);
    assert_eq!(approver.calls(), ["select $1", "insert into t values ($1)", "select 9"]);
    assert_eq!(s.tracked_names().0, 1, "the rejected statement is not remembered");
    let answers = cat(&[&ParseComplete, &BindComplete, &tag("SELECT 1"), &ready(b'I')]);
    let then = answer("SELECT 1", b'I');
    let (out, done) = server(&mut s, &[&answers[..], &then[..]].concat().into());
    let expected = cat(&[
        &ParseComplete,
        &BindComplete,
        &tag("SELECT 1"),
        &server_error("42501", "approval denied"),
        &ready(b'I'),
        &tag("SELECT 1"),
        &ready(b'I'),
    ]);
    assert_eq!(out, expected);
    assert_eq!(done, ["select $1", "select 9"]);

    // alone, with its Sync still to come: answered at once, the Sync forwarded when it arrives
    let (mut s, _) = session();
    client(&mut s, &cat(&[&parse("", "update t set a = 1 where b = $1"), &bind("", "")]));
    assert_eq!(reject(&mut s), (Bytes::new(), Some(rejected())));
    assert_eq!(client(&mut s, &cat(&[&execute(""), &Sync])), (cat(&[&Sync]), None));
}

#[test]
fn what_follows_a_released_statement_may_be_held_again() {
    let (mut s, _) = session();
    let wire = cat(&[
        &query("insert into t values (1)"),
        &query("select 1"),
        &query("insert into t values (2)"),
        &query("drop table t"),
        &query("select 2"),
    ]);
    assert_eq!(client(&mut s, &wire), (Bytes::new(), None));
    let (fwd, _) = release(&mut s);
    assert_eq!(fwd, cat(&[&query("insert into t values (1)"), &query("select 1")]));
    assert_eq!(s.held().unwrap().sql, Some(b("insert into t values (2)")));
    assert_eq!(client(&mut s, &cat(&[&query("select 3")])), (Bytes::new(), None));
    // released: the denied drop is answered at its place, after the other pending answers
    let (fwd, reply) = release(&mut s);
    assert_eq!(fwd, cat(&[&query("insert into t values (2)"), &query("select 2"), &query("select 3")]));
    assert_eq!(reply, None);
    assert!(s.held().is_none());
    let answers = [
        answer("INSERT 0 1", b'I'),
        answer("SELECT 1", b'I'),
        answer("INSERT 0 1", b'I'),
        answer("SELECT 1", b'I'),
        answer("SELECT 1", b'I'),
    ];
    let (out, done) = server(&mut s, &answers.concat().into());
    let denial = [&denied()[..], &ready(b'I').to_bytes().unwrap()[..]].concat();
    let expected = [&answers[..3].concat()[..], &denial[..], &answers[3..].concat()[..]].concat();
    assert_eq!(out, expected);
    assert_eq!(done.len(), 5);
}

#[test]
fn held_bytes_are_bounded() {
    let mut s = Session::new(1024);
    s.set_policy(Some(Approver::default().policy()), READ);
    client(&mut s, &cat(&[&query("insert into t values (1)")]));
    let filler = cat(&[&query(&format!("select '{}'", "x".repeat(900)))]);
    s.feed_client(&filler, 1).unwrap();
    s.feed_client(&filler, 1).unwrap();
    let err = s.feed_client(&filler, 1).unwrap_err();
    assert!(matches!(err, ProtocolError::ClientHeldTooLong(n) if n > 2048), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("{} bytes arrived from the client while a statement was held", s.held_bytes() + filler.len())
    );
}

#[test]
fn frames_kept_while_holding_are_vetted() {
    let (mut s, _) = session();
    client(&mut s, &cat(&[&query("insert into t values (1)")]));
    assert_eq!(
        s.feed_client(&Bytes::from_static(b"\x07"), 1).unwrap_err(),
        ProtocolError::InvalidFrontendType(7)
    );
    let (mut s, _) = session();
    client(&mut s, &cat(&[&query("insert into t values (1)")]));
    let huge = Bytes::from_static(b"Q\x7f\xff\xff\xff");
    assert!(matches!(s.feed_client(&huge, 1).unwrap_err(), ProtocolError::TooLarge { .. }));
}

#[test]
fn terminate_while_holding_drops_the_held_statement_and_is_forwarded() {
    let (mut s, _) = session();
    client(&mut s, &cat(&[&query("select 1"), &query("insert into t values (1)")]));
    let (fwd, terminate) = s.feed_client(&cat(&[&query("select 2"), &Terminate]), 1).unwrap();
    assert!(terminate);
    assert_eq!(fwd.to_bytes(&Bytes::new()), cat(&[&Terminate]));
    assert!(s.held().is_none());
    assert_eq!(s.held_bytes(), 0);

    // in the same read as the held statement
    let (mut s, _) = session();
    let wire = cat(&[&query("select 1"), &query("insert into t values (1)"), &Terminate]);
    let (fwd, terminate) = s.feed_client(&wire, 1).unwrap();
    assert!(terminate);
    assert_eq!(fwd.to_bytes(&wire), cat(&[&query("select 1"), &Terminate]));
    assert!(s.held().is_none());
}

#[test]
fn partial_frames_around_a_hold() {
    let (mut s, _) = session();
    let wire = cat(&[&query("select 1"), &query("insert into t values (1)"), &query("select 2")]);
    let mut fwd = Vec::new();
    // byte by byte: the held frame arrives in pieces, and so does the rest
    for i in 0..wire.len() - 3 {
        let piece = wire.slice(i..=i);
        fwd.extend_from_slice(&s.feed_client(&piece, 1).unwrap().0.to_bytes(&piece));
    }
    assert_eq!(fwd, cat(&[&query("select 1")]));
    assert!(s.held().is_some());
    // released with the last frame incomplete: it is kept for the next read
    let (out, _) = release(&mut s);
    assert_eq!(out, cat(&[&query("insert into t values (1)")]));
    let tail = wire.slice(wire.len() - 3..);
    assert_eq!(client(&mut s, &tail).0, cat(&[&query("select 2")]));
}

#[test]
fn a_held_bind_is_released_for_its_batch_only() {
    let (mut s, approver) = session();
    // a named statement released earlier: its Binds in later batches are checked again
    let p = cat(&[&parse("w", "update t set a = $1 where id = 1"), &Sync]);
    client(&mut s, &p);
    assert_eq!(release(&mut s), (p, None));
    server(&mut s, &cat(&[&ParseComplete, &ready(b'I')]));
    let batch = cat(&[&bind("", "w"), &execute(""), &bind("", "w"), &execute(""), &Sync]);
    assert_eq!(client(&mut s, &batch), (Bytes::new(), None));
    let held = s.held().unwrap();
    assert_eq!(
        (held.kind, held.sql.clone(), held.name.clone()),
        (HeldKind::Bind, Some(b("update t set a = $1 where id = 1")), Some(b("w")))
    );
    assert_eq!(release(&mut s), (batch.clone(), None));
    assert_eq!(
        approver.calls(),
        ["update t set a = $1 where id = 1", "bind w"],
        "the second Bind is part of the unit"
    );
    // the next batch is checked again
    assert_eq!(client(&mut s, &batch), (Bytes::new(), None));
    assert_eq!(approver.calls().len(), 3);
    assert_eq!(reject(&mut s), (cat(&[&Sync]), None));
}

#[test]
fn a_bind_sent_after_the_release_is_checked_even_before_the_sync() {
    // psycopg's pipeline mode: Flush to fetch a result, its Sync only at the end of the pipeline
    let (mut s, approver) = session();
    let p = cat(&[&parse("w", "update t set a = $1 where id = 1"), &Sync]);
    client(&mut s, &p);
    assert_eq!(release(&mut s), (p, None));
    server(&mut s, &cat(&[&ParseComplete, &ready(b'I')]));
    let first = cat(&[&bind("", "w"), &execute(""), &Flush]);
    assert_eq!(client(&mut s, &first), (Bytes::new(), None));
    assert_eq!(release(&mut s), (first, None));
    // the same statement, the same batch, after the decision: held again
    let later = cat(&[&bind("", "w"), &execute(""), &Sync]);
    assert_eq!(client(&mut s, &later), (Bytes::new(), None));
    assert_eq!(s.held().map(|h| h.kind), Some(HeldKind::Bind));
    assert_eq!(approver.calls(), ["update t set a = $1 where id = 1", "bind w", "bind w"]);
    assert_eq!(reject(&mut s), (cat(&[&Sync]), None));
}

#[test]
fn a_held_function_call_is_released_or_rejected() {
    let call = FunctionCall { oid: 42, arg_formats: vec![], args: vec![], result_format: 0 };
    let (mut s, _) = session();
    let wire = cat(&[&call, &query("select 1")]);
    assert_eq!(client(&mut s, &wire), (Bytes::new(), None));
    assert_eq!(s.held().unwrap().kind, HeldKind::FunctionCall);
    assert_eq!(release(&mut s), (wire.clone(), None));
    assert_eq!(s.pending(), 2);

    let (mut s, _) = session();
    client(&mut s, &wire);
    let expected = [&rejected()[..], &ready(b'I').to_bytes().unwrap()[..]].concat();
    assert_eq!(reject(&mut s), (cat(&[&query("select 1")]), Some(expected.into())));
}

#[test]
fn a_malformed_rejection_answers_with_the_check_failed_error() {
    let (mut s, _) = session();
    client(&mut s, &cat(&[&query("insert into t values (1)")]));
    s.reject(Bytes::from_static(b"not an error"), 5).unwrap();
    let expected =
        [&error_response("XX000", CHECK_FAILED_MESSAGE)[..], &ready(b'I').to_bytes().unwrap()[..]].concat();
    assert_eq!(s.take_reply(), Some(expected.into()));
}

#[test]
fn a_hold_inside_a_transaction_keeps_it_open() {
    let (mut s, _) = session();
    client(&mut s, &cat(&[&query("begin")]));
    server(&mut s, &answer("BEGIN", b'T'));
    client(&mut s, &cat(&[&query("update t set a = 1 where id = 1"), &query("commit")]));
    assert_eq!((s.tx_status(), s.pending()), ('T', 0));
    let (fwd, _) = release(&mut s);
    assert_eq!(fwd, cat(&[&query("update t set a = 1 where id = 1"), &query("commit")]));
    let answers = [answer("UPDATE 1", b'T'), answer("COMMIT", b'I')].concat();
    assert_eq!(server(&mut s, &answers.clone().into()).0, answers);
    assert_eq!(s.tx_status(), 'I');
}
