//! The session's SQL policy hook: the cached fast path, denials answered at their place in the
//! response stream, skip-until-Sync after a denied Parse.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;
use common::*;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hoopgw_core::pg::messages::complete::{BindComplete, ParseComplete};
use hoopgw_core::pg::messages::describe::{Describe, Target};
use hoopgw_core::pg::messages::function_call::FunctionCall;
use hoopgw_core::pg::messages::sync_flush_terminate::{Flush, Sync, Terminate};
use hoopgw_core::pg::messages::ToBytes;
use hoopgw_core::pg::policy::{error_response, CHECK_FAILED_MESSAGE};
use hoopgw_core::pg::{
    normalize, CheckFailed, Policy, Session, SqlCache, StatementKind, StatementStatus, Verdict,
};

const MAX: usize = 1 << 20;
fn denied_then_ready(status: u8) -> Bytes {
    cat(&[&server_error("42501", "denied by policy"), &ready(status)])
}

/// One call of the check.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    sql: Option<String>,
    cached: Option<u32>,
    name: Option<String>,
}

/// A check that classifies by the first word (select = READ, anything else = WRITE) and denies
/// WRITE; records its calls.
#[derive(Clone, Default)]
struct Recorder {
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Recorder {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    fn policy(&self, cache: Option<SqlCache>) -> Policy {
        let calls = Arc::clone(&self.calls);
        Policy::new(
            cache,
            Box::new(move |sql: Option<&[u8]>, cached: Option<u32>, name: Option<&[u8]>| {
                let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
                calls.lock().unwrap().push(Call { sql: sql.map(text), cached, name: name.map(text) });
                let Some(sql) = sql else {
                    if name.is_some() {
                        // a Bind: deny WRITE statements, and statements it does not know
                        let mask = cached.unwrap_or(WRITE);
                        return Ok(Verdict {
                            mask,
                            cacheable: false,
                            error: (mask & WRITE != 0).then(denied),
                            hold: false,
                        });
                    }
                    return Ok(Verdict { mask: WRITE, cacheable: false, error: Some(denied()), hold: false });
                };
                let sql = String::from_utf8_lossy(sql).to_lowercase();
                if sql.contains("boom") {
                    return Err(CheckFailed("boom".into()));
                }
                let mask = if sql.trim_start().starts_with("select") { READ } else { WRITE };
                let error = (mask & WRITE != 0).then(denied);
                Ok(Verdict { mask, cacheable: true, error, hold: false })
            }),
        )
    }
}

/// A session with the recorder's policy, allowing READ.
fn session(cache: Option<SqlCache>) -> (Session, Recorder) {
    let rec = Recorder::default();
    let mut s = Session::new(MAX);
    s.set_policy(Some(rec.policy(cache)), READ);
    (s, rec)
}

/// Feeds the client read; returns (forwarded bytes, immediate reply).
fn client(s: &mut Session, data: &Bytes) -> (Bytes, Option<Bytes>) {
    let (fwd, _) = s.feed_client(data, 1).unwrap();
    (fwd.to_bytes(data), s.take_reply())
}

/// Feeds the server read; returns what goes to the client.
fn server(s: &mut Session, data: &Bytes) -> Bytes {
    let (fwd, _) = s.feed_server(data, 2).unwrap();
    fwd.to_bytes(data)
}

#[test]
fn cached_allowed_shapes_skip_the_check() {
    let cache = SqlCache::new(100);
    let (mut s, rec) = session(Some(cache.clone()));
    let q = cat(&[&query("SELECT abalance FROM pgbench_accounts WHERE aid = 1;")]);
    assert_eq!(client(&mut s, &q), (q.clone(), None));
    assert_eq!(rec.count(), 1);
    assert_eq!(cache.len(), 1);
    for aid in [2, 77, 123456] {
        let q = cat(&[&query(&format!("SELECT abalance FROM pgbench_accounts WHERE aid = {aid};"))]);
        let (fwd, _) = s.feed_client(&q, 1).unwrap();
        assert_eq!(fwd, hoopgw_core::pg::Forward::All, "forwarded without a copy");
    }
    assert_eq!(rec.count(), 1, "same shape: no more checks");
    // an unnamed Parse of a cached shape takes the fast path too; a named one is always checked
    let p = cat(&[&parse("", "SELECT abalance FROM pgbench_accounts WHERE aid = 5;"), &Sync]);
    assert_eq!(client(&mut s, &p).0, p);
    assert_eq!(rec.count(), 1);
    let p = cat(&[&parse("s1", "SELECT abalance FROM pgbench_accounts WHERE aid = 5;"), &Sync]);
    assert_eq!(client(&mut s, &p).0, p);
    let calls = rec.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].name.as_deref(), Some("s1"));
    assert_eq!(calls[1].cached, Some(READ), "the cached mask is passed along");
    // a shape the normalizer gives up on is checked every time
    for _ in 0..2 {
        client(&mut s, &cat(&[&query(r"select E'\n'")]));
    }
    assert_eq!(rec.count(), 4);
}

#[test]
fn cached_shapes_outside_the_allowed_mask_are_checked() {
    let cache = SqlCache::new(100);
    let (mut s, rec) = session(Some(cache.clone()));
    let q = cat(&[&query("delete from t where id = 1")]);
    let (fwd, reply) = client(&mut s, &q);
    assert!(fwd.is_empty());
    assert_eq!(reply, Some(denied_then_ready(b'I')));
    assert_eq!(cache.get(&normalize(b"delete from t where id = 2").unwrap()), Some(WRITE));
    let (fwd, reply) = client(&mut s, &cat(&[&query("delete from t where id = 2")]));
    assert!(fwd.is_empty());
    assert!(reply.is_some());
    let calls = rec.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!((calls[0].cached, calls[1].cached), (None, Some(WRITE)));
    // the session's allowed classes can change: then the cached shape is forwarded unchecked
    s.set_allow_mask(READ | WRITE);
    let q = cat(&[&query("delete from t where id = 3")]);
    assert_eq!(client(&mut s, &q), (q, None));
    assert_eq!(rec.count(), 2);
    assert_eq!(s.pending(), 1);
}

#[test]
fn without_a_cache_every_statement_is_checked() {
    let (mut s, rec) = session(None);
    let q = cat(&[&query("select 1")]);
    for _ in 0..3 {
        assert_eq!(client(&mut s, &q), (q.clone(), None));
    }
    assert_eq!(rec.count(), 3);
    assert_eq!(rec.calls()[0], Call { sql: Some("select 1".into()), cached: None, name: None });
}

#[test]
fn a_lone_denied_query_is_answered_at_once_and_not_recorded() {
    let (mut s, _) = session(Some(SqlCache::new(10)));
    let (fwd, reply) = client(&mut s, &cat(&[&query("drop table t")]));
    assert!(fwd.is_empty());
    assert_eq!(reply, Some(denied_then_ready(b'I')));
    assert_eq!(s.pending(), 0);
    assert_eq!(s.take_reply(), None, "taken once");
    // the session goes on normally
    let q = cat(&[&query("select 1")]);
    assert_eq!(client(&mut s, &q), (q, None));
    let (_, done) = s.feed_server(&cat(&[&tag("SELECT 1"), &ready(b'I')]), 3).unwrap();
    assert_eq!(done.len(), 1, "only the forwarded query is a statement");
    assert_eq!(done[0].sql, "select 1");
}

#[test]
fn a_denial_in_a_pipeline_is_answered_between_the_neighbours() {
    let (mut s, _) = session(Some(SqlCache::new(10)));
    let wire = cat(&[&query("select 1"), &query("update t set a = 1"), &query("select 2")]);
    let (fwd, reply) = client(&mut s, &wire);
    assert_eq!(fwd, cat(&[&query("select 1"), &query("select 2")]));
    assert_eq!(reply, None);
    assert_eq!(s.pending(), 3, "the denial is pending until answered");
    let first = cat(&[&row("1"), &tag("SELECT 1"), &ready(b'T')]);
    let second = cat(&[&row("2"), &tag("SELECT 1"), &ready(b'T')]);
    // whole, then byte by byte: the answer always follows the first query's ReadyForQuery
    let expected = [&first[..], &denied_then_ready(b'T')[..], &second[..]].concat();
    assert_eq!(server(&mut s, &[&first[..], &second[..]].concat().into()), expected);
    assert_eq!(s.pending(), 0);

    let (mut s, _) = session(Some(SqlCache::new(10)));
    client(&mut s, &wire);
    let mut out = Vec::new();
    for byte in [&first[..], &second[..]].concat() {
        out.extend_from_slice(&server(&mut s, &Bytes::copy_from_slice(&[byte])));
    }
    assert_eq!(out, expected);
}

#[test]
fn the_answer_carries_the_latest_transaction_status() {
    for status in [b'T', b'E'] {
        let (mut s, _) = session(None);
        client(&mut s, &cat(&[&query("begin")]));
        // "begin" is denied by the recorder (not a select): open the transaction by hand
        let q = cat(&[&query("select 1")]);
        client(&mut s, &q);
        server(&mut s, &cat(&[&tag("SELECT 1"), &ready(status)]));
        assert_eq!(s.tx_status(), char::from(status));
        let (_, reply) = client(&mut s, &cat(&[&query("insert into t values (1)")]));
        assert_eq!(reply, Some(denied_then_ready(status)));
    }
}

#[test]
fn a_denied_parse_drops_the_batch_up_to_sync() {
    let (mut s, rec) = session(Some(SqlCache::new(10)));
    let wire = cat(&[
        &parse("", "select $1"),
        &bind("", ""),
        &execute(""),
        &parse("", "delete from t"),
        &bind("", ""),
        &Describe { target: Target::Portal, name: b("") },
        &execute(""),
        &Flush,
        &Sync,
        &query("select 2"),
    ]);
    let (fwd, reply) = client(&mut s, &wire);
    assert_eq!(fwd, cat(&[&parse("", "select $1"), &bind("", ""), &execute(""), &Sync, &query("select 2")]));
    assert_eq!(reply, None);
    assert_eq!(rec.count(), 3, "the dropped messages are not checked");
    let answers = cat(&[&ParseComplete, &BindComplete, &tag("SELECT 1"), &ready(b'I')]);
    let then = cat(&[&tag("SELECT 1"), &ready(b'I')]);
    let out = server(&mut s, &[&answers[..], &then[..]].concat().into());
    let expected = cat(&[
        &ParseComplete,
        &BindComplete,
        &tag("SELECT 1"),
        &server_error("42501", "denied by policy"),
        &ready(b'I'),
        &tag("SELECT 1"),
        &ready(b'I'),
    ]);
    assert_eq!(out, expected, "the error, then the server's answer to the Sync");
    assert_eq!(s.pending(), 0);
}

#[test]
fn a_denied_parse_alone_is_answered_at_once_and_its_sync_forwarded() {
    let (mut s, _) = session(None);
    let (fwd, reply) = client(&mut s, &cat(&[&parse("s", "truncate t"), &bind("", "s"), &execute("")]));
    assert!(fwd.is_empty());
    assert_eq!(reply, Some(denied()));
    assert_eq!(s.tracked_names(), (0, 0), "the denied statement is not remembered");
    // the Sync comes in a later read
    let (fwd, reply) = client(&mut s, &cat(&[&Sync]));
    assert_eq!((fwd, reply), (cat(&[&Sync]), None));
    assert_eq!(server(&mut s, &cat(&[&ready(b'I')])), cat(&[&ready(b'I')]));
    assert_eq!(s.pending(), 0);
}

#[test]
fn one_error_per_batch_when_the_server_failed_first() {
    let (mut s, _) = session(None);
    let wire =
        cat(&[&parse("", "select nope"), &bind("", ""), &execute(""), &parse("", "delete from t"), &Sync]);
    let (fwd, reply) = client(&mut s, &wire);
    assert_eq!(fwd, cat(&[&parse("", "select nope"), &bind("", ""), &execute(""), &Sync]));
    assert_eq!(reply, None);
    let answers = cat(&[&server_error("42703", "column \"nope\" does not exist"), &ready(b'I')]);
    let (fwd, done) = s.feed_server(&answers, 2).unwrap();
    assert_eq!(fwd.to_bytes(&answers), answers, "no second error");
    let kinds: Vec<_> = done.iter().map(|d| (d.kind, d.status)).collect();
    assert_eq!(
        kinds,
        [(StatementKind::Parse, StatementStatus::Error), (StatementKind::Execute, StatementStatus::Skipped)]
    );
    assert_eq!(s.pending(), 0);

    // the server's error already arrived (everything in flight skipped) before the denied Parse
    let (mut s, _) = session(None);
    client(&mut s, &cat(&[&parse("", "select nope"), &bind("", "")]));
    server(&mut s, &cat(&[&server_error("42703", "nope")]));
    assert_eq!(s.pending(), 0);
    let (fwd, reply) = client(&mut s, &cat(&[&parse("", "delete from t"), &execute(""), &Sync]));
    assert_eq!((fwd, reply), (cat(&[&Sync]), None));
    assert_eq!(server(&mut s, &cat(&[&ready(b'I')])), cat(&[&ready(b'I')]));

    // an error in the batch before: the answer to a denial in the next batch is still sent
    let (mut s, _) = session(None);
    let wire = cat(&[&parse("", "select nope"), &Sync, &parse("", "delete from t"), &Sync]);
    let (fwd, _) = client(&mut s, &wire);
    assert_eq!(fwd, cat(&[&parse("", "select nope"), &Sync, &Sync]));
    let out = server(&mut s, &cat(&[&server_error("42703", "nope"), &ready(b'I'), &ready(b'I')]));
    assert_eq!(
        out,
        cat(&[
            &server_error("42703", "nope"),
            &ready(b'I'),
            &server_error("42501", "denied by policy"),
            &ready(b'I')
        ])
    );
}

#[test]
fn function_calls_are_always_checked() {
    let cache = SqlCache::new(10);
    let (mut s, rec) = session(Some(cache.clone()));
    let fc = FunctionCall { oid: 1598, arg_formats: vec![], args: vec![], result_format: 0 };
    let (fwd, reply) = client(&mut s, &cat(&[&fc]));
    assert!(fwd.is_empty());
    assert_eq!(reply, Some(denied_then_ready(b'I')));
    assert_eq!(rec.calls(), [Call { sql: None, cached: None, name: None }]);
    assert!(cache.is_empty(), "not cacheable");
    // in a pipeline: between its neighbours, with ReadyForQuery
    let (fwd, _) = client(&mut s, &cat(&[&query("select 1"), &fc, &query("select 2")]));
    assert_eq!(fwd, cat(&[&query("select 1"), &query("select 2")]));
    let out = server(&mut s, &cat(&[&tag("SELECT 1"), &ready(b'I'), &tag("SELECT 1"), &ready(b'I')]));
    assert_eq!(
        out,
        cat(&[
            &tag("SELECT 1"),
            &ready(b'I'),
            &server_error("42501", "denied by policy"),
            &ready(b'I'),
            &tag("SELECT 1"),
            &ready(b'I')
        ])
    );
}

#[test]
fn a_failing_check_denies_with_xx000() {
    let (mut s, _) = session(Some(SqlCache::new(10)));
    let (fwd, reply) = client(&mut s, &cat(&[&query("select boom")]));
    assert!(fwd.is_empty());
    let expected =
        [&error_response("XX000", CHECK_FAILED_MESSAGE)[..], &ready(b'I').to_bytes().unwrap()[..]].concat();
    assert_eq!(reply.unwrap(), expected);
}

#[test]
fn a_malformed_error_from_the_check_denies_with_xx000() {
    let mut s = Session::new(MAX);
    let check = |_: Option<&[u8]>, _: Option<u32>, _: Option<&[u8]>| {
        Ok(Verdict {
            mask: 0,
            cacheable: false,
            error: Some(Bytes::from_static(b"not a message")),
            hold: false,
        })
    };
    s.set_policy(Some(Policy::new(None, Box::new(check))), 0);
    let (_, reply) = client(&mut s, &cat(&[&query("select 1")]));
    assert!(reply.unwrap().starts_with(&error_response("XX000", CHECK_FAILED_MESSAGE)));
}

#[test]
fn statements_inside_copy_in_are_checked_and_terminate_passes_a_skip() {
    use hoopgw_core::pg::messages::copy::{CopyData, CopyDirection, CopyDone, CopyResponse};
    let (mut s, rec) = session(None);
    client(&mut s, &cat(&[&query("select 1")]));
    let copy_in = CopyResponse { direction: CopyDirection::In, format: 0, column_formats: vec![] };
    // the server announces copy-in for the (allowed) query; copy data passes unchecked, but a
    // statement in the copy stream is checked: a bad row ends the copy on the server's side and
    // the server then runs what follows before the gateway sees its error
    server(&mut s, &cat(&[&copy_in]));
    let data = cat(&[&CopyData { data: b("notanint\n") }, &query("drop table t"), &CopyDone]);
    let (fwd, reply) = client(&mut s, &data);
    assert_eq!(fwd, cat(&[&CopyData { data: b("notanint\n") }, &CopyDone]));
    assert_eq!(reply, None, "answered in its place, after the copy's own answer");
    assert_eq!(rec.count(), 2);
    let answer = server(&mut s, &cat(&[&server_error("22P02", "bad row"), &ready(b'I')]));
    assert!(answer.ends_with(&denied_then_ready(b'I')), "the denial follows the copy's error");
    // Terminate is honoured in the middle of a dropped batch
    let (mut s, _) = session(None);
    let wire = cat(&[&parse("", "delete from t"), &bind("", ""), &Terminate]);
    let (fwd, terminate) = s.feed_client(&wire, 1).unwrap();
    assert!(terminate);
    assert_eq!(fwd.to_bytes(&wire), cat(&[&Terminate]));
}

#[test]
fn without_a_policy_nothing_changes() {
    let mut s = Session::new(MAX);
    assert!(!s.has_policy());
    let wire = cat(&[&query("drop table t"), &parse("", "delete from t"), &Sync]);
    let (fwd, _) = s.feed_client(&wire, 1).unwrap();
    assert_eq!(fwd, hoopgw_core::pg::Forward::All);
    assert_eq!(s.take_reply(), None);
}

#[test]
fn the_cache_stays_bounded() {
    let cache = SqlCache::new(8);
    let (mut s, rec) = session(Some(cache.clone()));
    for i in 0..100 {
        // a different shape each time (the column name changes)
        client(&mut s, &cat(&[&query(&format!("select c{i} from t where a = {i}"))]));
        assert!(cache.len() <= 8);
    }
    assert_eq!(rec.count(), 100);
    assert!(!cache.is_empty());
}

#[test]
fn a_bind_is_checked_again_when_its_classes_are_no_longer_allowed() {
    use std::sync::atomic::{AtomicU32, Ordering};
    // classes like the recorder, but deciding against `allowed` (a time window)
    let allowed = Arc::new(AtomicU32::new(READ | WRITE));
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let (a, c) = (Arc::clone(&allowed), Arc::clone(&calls));
    let policy = Policy::new(
        None,
        Box::new(move |sql: Option<&[u8]>, cached: Option<u32>, name: Option<&[u8]>| {
            let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
            c.lock().unwrap().push(Call { sql: sql.map(text), cached, name: name.map(text) });
            let mask = match sql {
                Some(sql) if String::from_utf8_lossy(sql).starts_with("select") => READ,
                Some(_) => WRITE,
                None => cached.unwrap_or(WRITE),
            };
            let error = (mask & !a.load(Ordering::SeqCst) != 0).then(denied);
            Ok(Verdict { mask, cacheable: false, error, hold: false })
        }),
    );
    let mut s = Session::new(MAX);
    s.set_policy(Some(policy), READ | WRITE);
    let count = || calls.lock().unwrap().len();
    let last = || calls.lock().unwrap().last().cloned().unwrap();
    // inside the window: the named statement is parsed and bound
    let batch = cat(&[&parse("w", "update t set x = 1 where id = 2"), &bind("", "w"), &execute(""), &Sync]);
    assert_eq!(client(&mut s, &batch), (batch.clone(), None));
    server(&mut s, &cat(&[&ParseComplete, &BindComplete, &tag("UPDATE 1"), &ready(b'I')]));
    assert_eq!(count(), 1, "the Parse only");
    let again = cat(&[&bind("", "w"), &execute(""), &Sync]);
    assert_eq!(client(&mut s, &again), (again.clone(), None));
    server(&mut s, &cat(&[&BindComplete, &tag("UPDATE 1"), &ready(b'I')]));
    assert_eq!(count(), 1, "allowed Binds cost no check");
    // the window closed: the Bind is checked, denied, and the batch dropped up to its Sync
    allowed.store(READ, Ordering::SeqCst);
    s.set_allow_mask(READ);
    let (fwd, reply) = client(&mut s, &again);
    assert_eq!((fwd, reply), (cat(&[&Sync]), Some(denied())));
    assert_eq!(last(), Call { sql: None, cached: Some(WRITE), name: Some("w".into()) });
    assert_eq!(server(&mut s, &cat(&[&ready(b'I')])), cat(&[&ready(b'I')]));
    // a statement this session never parsed (a SQL PREPARE) is asked about by name
    let (fwd, reply) = client(&mut s, &cat(&[&bind("", "from_sql"), &execute(""), &Sync]));
    assert_eq!((fwd, reply), (cat(&[&Sync]), Some(denied())));
    assert_eq!(last(), Call { sql: None, cached: None, name: Some("from_sql".into()) });
    server(&mut s, &cat(&[&ready(b'I')]));
    // read statements bind without a check
    let n = count();
    let read = cat(&[&parse("r", "select 1"), &bind("", "r"), &execute(""), &Sync]);
    assert_eq!(client(&mut s, &read), (read.clone(), None));
    assert_eq!(count(), n + 1, "only the named Parse");
}

#[test]
fn a_guarded_parameter_changed_by_the_server_trips_the_session() {
    use hoopgw_core::pg::messages::parameter_status::ParameterStatus;
    let status = |n: &str, v: &str| ParameterStatus { name: b(n), value: b(v) };
    let mut s = Session::new(MAX);
    s.set_param_guard(vec![
        (b"standard_conforming_strings".to_vec(), vec![b"on".to_vec()]),
        (b"client_encoding".to_vec(), vec![b"UTF8".to_vec(), b"LATIN1".to_vec()]),
    ]);
    // accepted values (ASCII case-insensitive) and other parameters pass
    server(
        &mut s,
        &cat(&[&status("Standard_Conforming_Strings", "ON"), &status("client_encoding", "latin1")]),
    );
    server(&mut s, &cat(&[&status("application_name", "x"), &status("TimeZone", "UTC")]));
    assert_eq!(s.tripped(), None);
    // the frame is still forwarded; the caller ends the session
    let frame = cat(&[&status("client_encoding", "SJIS"), &status("standard_conforming_strings", "off")]);
    assert_eq!(server(&mut s, &frame), frame);
    assert_eq!(s.tripped(), Some("client_encoding=SJIS"), "the first change is reported");
    // without a guard nothing trips
    let mut plain = Session::new(MAX);
    server(&mut plain, &cat(&[&status("standard_conforming_strings", "off")]));
    assert_eq!(plain.tripped(), None);
}
