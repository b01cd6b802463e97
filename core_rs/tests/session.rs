//! End-to-end behaviour of the relay-phase session state machine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use hoopgw_core::mask::{MaskConfig, Masker, Style};
use hoopgw_core::pg::mask::TableInfo;
use hoopgw_core::pg::messages::bind::Bind;
use hoopgw_core::pg::messages::close::Close;
use hoopgw_core::pg::messages::command_complete::CommandComplete;
use hoopgw_core::pg::messages::complete::{BindComplete, CloseComplete, ParseComplete};
use hoopgw_core::pg::messages::copy::{CopyData, CopyDirection, CopyDone, CopyFail, CopyResponse};
use hoopgw_core::pg::messages::data_row::DataRow;
use hoopgw_core::pg::messages::describe::{Describe, Target};
use hoopgw_core::pg::messages::empty_query_response::EmptyQueryResponse;
use hoopgw_core::pg::messages::error_notice::{ErrorResponse, Fields, NoticeResponse};
use hoopgw_core::pg::messages::execute::Execute;
use hoopgw_core::pg::messages::function_call::{FunctionCall, FunctionCallResponse};
use hoopgw_core::pg::messages::no_data::NoData;
use hoopgw_core::pg::messages::notification::NotificationResponse;
use hoopgw_core::pg::messages::parameter_description::ParameterDescription;
use hoopgw_core::pg::messages::parameter_status::ParameterStatus;
use hoopgw_core::pg::messages::parse::Parse;
use hoopgw_core::pg::messages::portal_suspended::PortalSuspended;
use hoopgw_core::pg::messages::query::Query;
use hoopgw_core::pg::messages::ready_for_query::ReadyForQuery;
use hoopgw_core::pg::messages::row_description::{Field, RowDescription};
use hoopgw_core::pg::messages::sync_flush_terminate::{Flush, Sync, Terminate};
use hoopgw_core::pg::messages::ToBytes;
use hoopgw_core::pg::{Forward, Session, Statement, StatementKind, StatementStatus};

const MAX: usize = 1 << 20;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn cat(msgs: &[&dyn ToBytes]) -> Bytes {
    let mut out = BytesMut::new();
    for m in msgs {
        out.extend_from_slice(&m.to_bytes().unwrap());
    }
    out.freeze()
}

fn query(sql: &str) -> Query {
    Query { sql: b(sql) }
}
fn parse(name: &str, sql: &str) -> Parse {
    Parse { name: b(name), sql: b(sql), param_types: vec![] }
}
fn bind(portal: &str, stmt: &str, formats: Vec<i16>, params: Vec<Option<&[u8]>>) -> Bind {
    Bind {
        portal: b(portal),
        statement: b(stmt),
        param_formats: formats,
        params: params.into_iter().map(|p| p.map(Bytes::copy_from_slice)).collect(),
        result_formats: vec![],
    }
}
fn execute(portal: &str) -> Execute {
    Execute { portal: b(portal), max_rows: 0 }
}
fn tag(t: &str) -> CommandComplete {
    CommandComplete { tag: b(t) }
}
fn row(v: &str) -> DataRow {
    DataRow { values: vec![Some(b(v))] }
}
fn rd(name: &str) -> RowDescription {
    RowDescription {
        fields: vec![Field {
            name: b(name),
            table_oid: 0,
            column: 0,
            type_oid: 25,
            type_size: -1,
            type_modifier: -1,
            format: 0,
        }],
    }
}
fn ready(s: u8) -> ReadyForQuery {
    ReadyForQuery::new(s).unwrap()
}
fn error(code: &str, msg: &str) -> ErrorResponse {
    ErrorResponse(Fields::new("ERROR", code, msg, None, None))
}

/// Feeds both streams whole, returning the statements.
fn run(client: &Bytes, server: &Bytes) -> (Session, Vec<Statement>) {
    let mut s = Session::new(MAX);
    let (fwd, _) = s.feed_client(client, 10).unwrap();
    assert_eq!(fwd, Forward::All);
    let (fwd, done) = s.feed_server(server, 20).unwrap();
    assert_eq!(fwd, Forward::All);
    (s, done)
}

/// Feeds both streams cut into pieces of `step` bytes (client all first, then server).
fn run_chunked(client: &Bytes, server: &Bytes, step: usize) -> (Session, Vec<Statement>) {
    let mut s = Session::new(MAX);
    let mut forwarded = Vec::new();
    for piece in client.chunks(step) {
        let piece = Bytes::copy_from_slice(piece);
        let (fwd, _) = s.feed_client(&piece, 10).unwrap();
        forwarded.extend_from_slice(&fwd.to_bytes(&piece));
    }
    assert_eq!(forwarded, client[..]);
    let mut done = Vec::new();
    forwarded.clear();
    for piece in server.chunks(step) {
        let piece = Bytes::copy_from_slice(piece);
        let (fwd, d) = s.feed_server(&piece, 20).unwrap();
        forwarded.extend_from_slice(&fwd.to_bytes(&piece));
        done.extend(d);
    }
    assert_eq!(forwarded, server[..]);
    (s, done)
}

#[test]
fn simple_query_accumulates_tags_and_rows() {
    let client = cat(&[&query("select 1; show x; insert into t values (1); ")]);
    let server = cat(&[
        &rd("a"),
        &row("1"),
        &row("2"),
        &tag("SELECT 2"),
        &rd("x"),
        &row("on"),
        &NoticeResponse(Fields::new("NOTICE", "00000", "hi", None, None)),
        &tag("SHOW"),
        &tag("INSERT 0 1"),
        &ready(b'T'),
    ]);
    let (s, done) = run(&client, &server);
    assert_eq!(done.len(), 1);
    let st = &done[0];
    assert_eq!(st.kind, StatementKind::Query);
    assert_eq!(st.sql, "select 1; show x; insert into t values (1); ");
    assert_eq!(st.tags, ["SELECT 2", "SHOW", "INSERT 0 1"]);
    assert_eq!(st.rows, 4);
    assert_eq!(st.status, StatementStatus::Ok);
    assert_eq!((st.statement_name.as_deref(), st.portal.as_deref(), st.params.as_ref()), (None, None, None));
    assert_eq!((st.started_ns, st.ended_ns), (10, 20));
    assert_eq!(s.pending(), 0);
    assert_eq!(s.tx_status(), 'T');
}

#[test]
fn simple_query_error_and_empty_query() {
    let client = cat(&[&query("select 1; select nope"), &query("")]);
    let server = cat(&[
        &rd("a"),
        &row("1"),
        &tag("SELECT 1"),
        &error("42703", "column \"nope\" does not exist"),
        &ready(b'I'),
        &EmptyQueryResponse,
        &ready(b'I'),
    ]);
    let (_, done) = run(&client, &server);
    assert_eq!(done.len(), 2);
    assert_eq!(done[0].status, StatementStatus::Error);
    assert_eq!(done[0].tags, ["SELECT 1"]);
    assert_eq!(done[0].error, Some(("42703".into(), "column \"nope\" does not exist".into())));
    assert_eq!(done[1].tags, [""]);
    assert_eq!(done[1].status, StatementStatus::Ok);
    assert_eq!(done[1].rows, 0);
}

fn pipelined_batch() -> (Bytes, Bytes) {
    let client = cat(&[
        &parse("s1", "select $1::text, $2::bytea, $3::int"),
        &bind("", "s1", vec![0, 1, 0], vec![Some(b"hi"), Some(b"\x00\xff"), None]),
        &Describe { target: Target::Portal, name: b("") },
        &execute(""),
        &Sync,
        &parse("", "insert into t values ($1)"),
        &bind("p2", "", vec![], vec![Some(b"7")]),
        &execute("p2"),
        &Sync,
        &bind("", "s1", vec![1], vec![Some(b"\x01"), Some(b"\x02"), Some(b"\x03")]),
        &execute(""),
        &Flush,
        &Sync,
    ]);
    let server = cat(&[
        &ParseComplete,
        &BindComplete,
        &rd("text"),
        &row("hi"),
        &tag("SELECT 1"),
        &ready(b'I'),
        &ParseComplete,
        &BindComplete,
        &ParameterStatus { name: b("application_name"), value: b("x") },
        &tag("INSERT 0 1"),
        &ready(b'I'),
        &BindComplete,
        &row("a"),
        &NotificationResponse { process_id: 1, channel: b("c"), payload: b("") },
        &row("b"),
        &tag("SELECT 2"),
        &ready(b'I'),
    ]);
    (client, server)
}

#[test]
fn pipelined_extended_protocol() {
    let (client, server) = pipelined_batch();
    let mut s = Session::new(MAX);
    s.feed_client(&client, 5).unwrap();
    assert_eq!(s.pending(), 12);
    let (_, done) = s.feed_server(&server, 6).unwrap();
    assert_eq!(s.pending(), 0);
    assert_eq!(done.len(), 3);
    let first = &done[0];
    assert_eq!(first.kind, StatementKind::Execute);
    assert_eq!(first.sql, "select $1::text, $2::bytea, $3::int");
    assert_eq!(first.statement_name.as_deref(), Some("s1"));
    assert_eq!(first.portal.as_deref(), Some(""));
    assert_eq!(first.params, Some(vec![Some("hi".into()), Some("\\x00ff".into()), None]));
    assert_eq!((first.tags.clone(), first.rows), (vec!["SELECT 1".to_string()], 1));
    let second = &done[1];
    assert_eq!(second.sql, "insert into t values ($1)");
    assert_eq!(second.statement_name.as_deref(), Some(""));
    assert_eq!(second.portal.as_deref(), Some("p2"));
    assert_eq!(second.params, Some(vec![Some("7".into())]));
    assert_eq!(second.rows, 1);
    // one format code applies to every parameter
    assert_eq!(done[2].params, Some(vec![Some("\\x01".into()), Some("\\x02".into()), Some("\\x03".into())]));
    assert_eq!(done[2].rows, 2);
    assert!(done.iter().all(|d| d.status == StatementStatus::Ok && d.error.is_none()));
}

#[test]
fn chunking_does_not_change_the_result() {
    let (client, server) = pipelined_batch();
    let (_, whole) = run(&client, &server);
    for step in [1, 2, 3, 5, 7, 13, 64] {
        let (s, chunked) = run_chunked(&client, &server, step);
        assert_eq!(chunked, whole, "step {step}");
        assert_eq!(s.pending(), 0);
    }
}

#[test]
fn parse_error_is_recorded_and_the_rest_of_the_batch_skipped() {
    let client = cat(&[
        &parse("bad", "selec 1"),
        &bind("", "bad", vec![], vec![]),
        &execute(""),
        &execute(""),
        &Sync,
        &query("select 1"),
    ]);
    let server = cat(&[
        &error("42601", "syntax error at or near \"selec\""),
        &ready(b'I'),
        &rd("a"),
        &row("1"),
        &tag("SELECT 1"),
        &ready(b'I'),
    ]);
    let (s, done) = run(&client, &server);
    let summary: Vec<_> = done.iter().map(|d| (d.kind, d.status)).collect();
    assert_eq!(
        summary,
        [
            (StatementKind::Parse, StatementStatus::Error),
            (StatementKind::Execute, StatementStatus::Skipped),
            (StatementKind::Execute, StatementStatus::Skipped),
            (StatementKind::Query, StatementStatus::Ok),
        ]
    );
    assert_eq!(done[0].sql, "selec 1");
    assert_eq!(done[0].statement_name.as_deref(), Some("bad"));
    assert_eq!(done[0].error.as_ref().unwrap().0, "42601");
    assert_eq!(s.pending(), 0);
    // the rejected statement was forgotten
    assert_eq!(s.tracked_names().0, 0);
}

#[test]
fn bind_error_attaches_to_the_next_execute() {
    let client = cat(&[
        &parse("s", "select $1::int"),
        &bind("", "s", vec![], vec![Some(b"x")]),
        &execute(""),
        &execute(""),
        &Sync,
    ]);
    let server =
        cat(&[&ParseComplete, &error("22P02", "invalid input syntax for type integer: \"x\""), &ready(b'I')]);
    let (s, done) = run(&client, &server);
    assert_eq!(done.len(), 2);
    assert_eq!(done[0].status, StatementStatus::Error);
    assert_eq!(done[0].sql, "select $1::int");
    assert_eq!(done[0].params, Some(vec![Some("x".into())]));
    assert_eq!(done[0].error.as_ref().unwrap().0, "22P02");
    assert_eq!(done[1].status, StatementStatus::Skipped);
    assert_eq!(s.pending(), 0);
}

#[test]
fn bind_error_without_execute_is_still_recorded() {
    let client = cat(&[&bind("", "missing", vec![], vec![]), &Sync]);
    let server = cat(&[&error("26000", "prepared statement \"missing\" does not exist"), &ready(b'I')]);
    let (_, done) = run(&client, &server);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].status, StatementStatus::Error);
    assert_eq!(done[0].error.as_ref().unwrap().0, "26000");
}

#[test]
fn execute_error_skips_until_sync_even_when_sync_comes_later() {
    let client1 = cat(&[&parse("", "select 1/0"), &bind("", "", vec![], vec![]), &execute(""), &Flush]);
    let server1 = cat(&[&ParseComplete, &BindComplete, &error("22012", "division by zero")]);
    let client2 = cat(&[&bind("", "", vec![], vec![]), &execute(""), &Sync]);
    let server2 = cat(&[&ready(b'I')]);
    let mut s = Session::new(MAX);
    s.feed_client(&client1, 1).unwrap();
    let (_, done) = s.feed_server(&server1, 2).unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].status, StatementStatus::Error);
    s.feed_client(&client2, 3).unwrap();
    assert_eq!(s.pending(), 3);
    let (_, done) = s.feed_server(&server2, 4).unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].status, StatementStatus::Skipped);
    assert_eq!(s.pending(), 0);
}

#[test]
fn portal_suspended_then_resumed() {
    let client = cat(&[
        &parse("", "select generate_series(1, 3)"),
        &bind("c", "", vec![], vec![]),
        &Execute { portal: b("c"), max_rows: 2 },
        &Execute { portal: b("c"), max_rows: 2 },
        &Sync,
    ]);
    let server = cat(&[
        &ParseComplete,
        &BindComplete,
        &row("1"),
        &row("2"),
        &PortalSuspended,
        &row("3"),
        &tag("SELECT 1"),
        &ready(b'I'),
    ]);
    let (_, done) = run(&client, &server);
    assert_eq!(done.len(), 2);
    assert_eq!((done[0].status, done[0].rows), (StatementStatus::Suspended, 2));
    assert!(done[0].tags.is_empty());
    assert_eq!((done[1].status, done[1].rows), (StatementStatus::Ok, 1));
}

#[test]
fn describe_statement_and_close() {
    let client = cat(&[
        &parse("s", "select 1"),
        &Describe { target: Target::Statement, name: b("s") },
        &Sync,
        &parse("t", "create table x ()"),
        &Describe { target: Target::Statement, name: b("t") },
        &Close { target: Target::Statement, name: b("s") },
        &Sync,
    ]);
    let server = cat(&[
        &ParseComplete,
        &ParameterDescription { types: vec![] },
        &rd("?column?"),
        &ready(b'I'),
        &ParseComplete,
        &ParameterDescription { types: vec![] },
        &NoData,
        &CloseComplete,
        &ready(b'I'),
    ]);
    let (s, done) = run(&client, &server);
    assert!(done.is_empty());
    assert_eq!(s.pending(), 0);
    assert_eq!(s.tracked_names(), (1, 0));
}

#[test]
fn copy_in_simple_protocol() {
    let client = cat(&[
        &query("copy t from stdin"),
        &CopyData { data: b("1\n") },
        &CopyData { data: b("2\n") },
        &CopyDone,
    ]);
    let copy_in = CopyResponse { direction: CopyDirection::In, format: 0, column_formats: vec![0] };
    let mut s = Session::new(MAX);
    s.feed_client(&client, 1).unwrap();
    s.feed_server(&copy_in.to_bytes().unwrap(), 2).unwrap();
    assert!(s.in_copy());
    let (_, done) = s.feed_server(&cat(&[&tag("COPY 2"), &ready(b'I')]), 3).unwrap();
    assert!(!s.in_copy());
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].tags.clone(), done[0].rows), (vec!["COPY 2".to_string()], 2));
    assert_eq!(s.pending(), 0);
}

/// libpq in extended mode sends Sync right after Execute (ignored by the server in copy-in mode)
/// and another after CopyDone.
#[test]
fn copy_in_extended_protocol_like_libpq() {
    let copy_in = CopyResponse { direction: CopyDirection::In, format: 0, column_formats: vec![0] };
    for data_first in [false, true] {
        let mut s = Session::new(MAX);
        let head = cat(&[
            &parse("", "copy t from stdin"),
            &bind("", "", vec![], vec![]),
            &Describe { target: Target::Portal, name: b("") },
            &execute(""),
            &Sync,
        ]);
        let data = cat(&[&CopyData { data: b("1\n") }, &CopyDone, &Sync]);
        s.feed_client(&head, 1).unwrap();
        if data_first {
            s.feed_client(&data, 1).unwrap();
        }
        s.feed_server(&cat(&[&ParseComplete, &BindComplete, &NoData, &copy_in]), 2).unwrap();
        if !data_first {
            s.feed_client(&data, 1).unwrap();
        }
        assert_eq!(s.pending(), 2, "execute + one sync");
        let (_, done) = s.feed_server(&cat(&[&tag("COPY 1"), &ready(b'I')]), 3).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].rows, 1);
        assert_eq!(s.pending(), 0, "data_first={data_first}");
    }
}

#[test]
fn copy_fail_and_copy_out() {
    let copy_in = CopyResponse { direction: CopyDirection::In, format: 0, column_formats: vec![] };
    let copy_out = CopyResponse { direction: CopyDirection::Out, format: 0, column_formats: vec![0] };
    let client =
        cat(&[&query("copy t from stdin"), &CopyFail { message: b("nope") }, &query("copy t to stdout")]);
    let server = cat(&[
        &copy_in,
        &error("57014", "COPY from stdin failed: nope"),
        &ready(b'I'),
        &copy_out,
        &CopyData { data: b("1\n") },
        &CopyData { data: b("2\n") },
        &CopyDone,
        &tag("COPY 2"),
        &ready(b'I'),
    ]);
    let (s, done) = run(&client, &server);
    assert_eq!(done.len(), 2);
    assert_eq!(done[0].status, StatementStatus::Error);
    assert_eq!((done[1].status, done[1].rows), (StatementStatus::Ok, 2));
    assert_eq!(s.pending(), 0);
    assert!(!s.in_copy());
}

#[test]
fn function_call() {
    let client =
        cat(&[&FunctionCall { oid: 1598, arg_formats: vec![], args: vec![Some(b("1"))], result_format: 0 }]);
    let server = cat(&[&FunctionCallResponse { result: Some(b("0.1")) }, &ready(b'I')]);
    let (_, done) = run(&client, &server);
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].kind, StatementKind::Function);
    assert_eq!(done[0].sql, "function call oid=1598");
    assert_eq!(done[0].params, Some(vec![Some("1".into())]));
}

#[test]
fn terminate_and_invalid_types() {
    let mut s = Session::new(MAX);
    let (_, term) = s.feed_client(&cat(&[&query("select 1")]), 1).unwrap();
    assert!(!term);
    let (_, term) = s.feed_client(&cat(&[&Terminate]), 1).unwrap();
    assert!(term);
    let err = s.feed_client(&Bytes::from_static(b"p\0\0\0\x05\0"), 1).unwrap_err();
    assert_eq!(err.to_string(), "invalid frontend message type 0x70 ('p')");
    let err = Session::new(100).feed_server(&Bytes::from_static(b"D\0\0\x10\0"), 1).unwrap_err();
    assert_eq!(err.to_string(), "message length 4096 exceeds limit 100");
    // unknown backend types are forwarded
    let (fwd, _) = Session::new(100).feed_server(&Bytes::from_static(b"~\0\0\0\x04"), 1).unwrap();
    assert_eq!(fwd, Forward::All);
}

#[test]
fn named_portals_are_forgotten_when_idle() {
    let client = cat(&[
        &query("begin"),
        &parse("s", "select 1"),
        &bind("p1", "s", vec![], vec![]),
        &Sync,
        &query("commit"),
    ]);
    let server = cat(&[
        &tag("BEGIN"),
        &ready(b'T'),
        &ParseComplete,
        &BindComplete,
        &ready(b'T'),
        &tag("COMMIT"),
        &ready(b'I'),
    ]);
    let (s, _) = run(&client, &server);
    assert_eq!(s.tracked_names(), (1, 0));
}

fn masker(columns: &[&str]) -> Arc<Masker> {
    let cfg = MaskConfig {
        detectors: vec![("credit_card".into(), Style::Last4), ("email".into(), Style::Redact)],
        columns: columns.iter().map(|c| (c.to_string(), Style::Redact)).collect(),
        ..MaskConfig::default()
    };
    Arc::new(Masker::new(cfg).unwrap())
}

fn field(name: &str, table_oid: u32, column: i16, type_oid: u32) -> Field {
    Field { name: b(name), table_oid, column, type_oid, type_size: -1, type_modifier: -1, format: 0 }
}

/// Feeds the server stream in pieces of `step` bytes, resolving catalog requests with `tables`.
fn feed_resolving(
    s: &mut Session,
    server: &Bytes,
    step: usize,
    tables: &[(u32, TableInfo)],
) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut pauses = 0;
    for piece in server.chunks(step) {
        let piece = Bytes::copy_from_slice(piece);
        let (fwd, _) = s.feed_server(&piece, 2).unwrap();
        out.extend_from_slice(&fwd.to_bytes(&piece));
        while let Some(request) = s.catalog_request() {
            pauses += 1;
            let answer = tables
                .iter()
                .filter(|(oid, _)| request.tables.contains(oid))
                .map(|(o, t)| (*o, Some(t.clone())));
            s.resolve(answer.collect(), vec![], None);
            let empty = Bytes::new();
            let (fwd, _) = s.feed_server(&empty, 3).unwrap();
            out.extend_from_slice(&fwd.to_bytes(&empty));
        }
    }
    (out, pauses)
}

#[test]
fn masks_rows_of_simple_and_extended_results() {
    let client = cat(&[
        &query("select card from t"),
        &parse("s", "select card from t"),
        &Describe { target: Target::Statement, name: b("s") },
        &bind("", "s", vec![], vec![]),
        &execute(""),
        &Sync,
    ]);
    let server = cat(&[
        &rd("card"),
        &row("card 4111 1111 1111 1111, mail bob@example.com"),
        &row("order 12345"),
        &tag("SELECT 2"),
        &ready(b'I'),
        &ParseComplete,
        &ParameterDescription { types: vec![] },
        &rd("card"),
        &BindComplete,
        &row("4111111111111111"),
        &tag("SELECT 1"),
        &ready(b'I'),
    ]);
    for step in [server.len(), 7, 1] {
        let mut s = Session::new(MAX);
        s.set_masker(Some(masker(&[])));
        s.feed_client(&client, 1).unwrap();
        let (out, pauses) = feed_resolving(&mut s, &server, step, &[]);
        assert_eq!(pauses, 0, "built-in types, no column rules: nothing to look up");
        let text = String::from_utf8_lossy(&out);
        assert!(!text.contains("4111 1111") && !text.contains("4111111111111111"), "{text}");
        assert!(!text.contains("bob@example.com"), "{text}");
        assert!(text.contains("order 12345"), "{text}");
        assert_eq!(text.matches("1111").count(), 2, "last4 keeps the last group: {text}");
        let counts = s.mask_counts();
        assert!(counts.contains(&("credit_card".to_string(), 2)), "{counts:?}");
        assert!(counts.contains(&("email".to_string(), 1)), "{counts:?}");
    }
}

#[test]
fn column_rules_pause_for_table_names_then_mask_whole_values() {
    let client = cat(&[&query("select id, account_number, note from accounts")]);
    let shape = RowDescription {
        fields: vec![
            field("id", 16400, 1, 23),
            field("account_number", 16400, 2, 25),
            field("note", 16400, 3, 25),
        ],
    };
    let server = cat(&[
        &shape,
        &DataRow { values: vec![Some(b("7")), Some(b("DE-000123")), Some(b("plain"))] },
        &DataRow { values: vec![Some(b("8")), None, Some(b("x@example.org"))] },
        &tag("SELECT 2"),
        &ready(b'I'),
    ]);
    let accounts = TableInfo {
        schema: "public".into(),
        name: "accounts".into(),
        columns: [(1, "id".to_string()), (2, "account_number".to_string()), (3, "note".to_string())]
            .into_iter()
            .collect(),
    };
    for step in [server.len(), 5] {
        let mut s = Session::new(MAX);
        s.set_masker(Some(masker(&["*.account_number"])));
        s.feed_client(&client, 1).unwrap();
        let (out, pauses) = feed_resolving(&mut s, &server, step, &[(16400, accounts.clone())]);
        assert_eq!(pauses, 1, "one look-up per table, cached for the session");
        let rows: Vec<&[u8]> = out.split(|b| *b == b'D').collect();
        let text = String::from_utf8_lossy(&out);
        assert!(!text.contains("DE-000123") && !text.contains("x@example.org"), "{text}");
        assert!(text.contains("plain") && text.contains("*****"), "{text}");
        assert!(rows.len() >= 3);
        // framing intact: the output parses as the same sequence of messages
        let mut check = Session::new(MAX);
        check.feed_client(&client, 1).unwrap();
        let (_, done) = check.feed_server(&Bytes::from(out.clone()), 4).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].rows, 2);
    }
}

#[test]
fn recorded_sql_params_and_errors_are_masked() {
    let client = cat(&[
        &query("insert into t values ('4111 1111 1111 1111')"),
        &parse("", "insert into t values ($1)"),
        &bind("", "", vec![], vec![Some(b"alice@example.com")]),
        &execute(""),
        &Sync,
    ]);
    let server = cat(&[
        &error("23505", "duplicate key value 4111111111111111"),
        &ready(b'I'),
        &ParseComplete,
        &BindComplete,
        &tag("INSERT 0 1"),
        &ready(b'I'),
    ]);
    let mut s = Session::new(MAX);
    s.set_masker(Some(masker(&[])));
    s.feed_client(&client, 1).unwrap();
    let (fwd, done) = s.feed_server(&server, 2).unwrap();
    let out = fwd.to_bytes(&server);
    assert!(!String::from_utf8_lossy(&out).contains("4111111111111111"));
    let all = format!("{done:?}");
    assert!(!all.contains("4111") || all.contains("****"), "{all}");
    assert!(!all.contains("4111 1111 1111 1111") && !all.contains("alice@example.com"), "{all}");
    assert!(!all.contains("4111111111111111"), "{all}");
    assert_eq!(done.len(), 2);
}

#[test]
fn fatal_error_completes_everything_in_flight() {
    let client = cat(&[&query("select pg_sleep(10)"), &query("select 2")]);
    let server = cat(&[&ErrorResponse(Fields::new(
        "FATAL",
        "57P01",
        "terminating connection due to administrator command",
        None,
        None,
    ))]);
    let (s, done) = run(&client, &server);
    let summary: Vec<_> = done.iter().map(|d| (d.status, d.error.as_ref().map(|e| e.0.as_str()))).collect();
    assert_eq!(summary, [(StatementStatus::Error, Some("57P01")), (StatementStatus::Skipped, None)]);
    assert_eq!(s.pending(), 0);
}

#[test]
fn prepared_statement_maps_stay_bounded() {
    let mut s = Session::new(MAX);
    for i in 0..10_000 {
        let name = format!("s{i}");
        let client = cat(&[
            &parse(&name, "select 1"),
            &parse("", "select 2"),
            &bind("", "", vec![], vec![]),
            &Close { target: Target::Statement, name: b(&name) },
            &Sync,
        ]);
        s.feed_client(&client, 1).unwrap();
        let server = cat(&[&ParseComplete, &ParseComplete, &BindComplete, &CloseComplete, &ready(b'I')]);
        s.feed_server(&server, 2).unwrap();
    }
    assert_eq!(s.tracked_names(), (1, 0));
    assert_eq!(s.pending(), 0);
}

#[test]
fn execute_without_describe_gets_a_describe_so_column_rules_apply() {
    let client = cat(&[
        &parse("", "select id, account_number from accounts"),
        &bind("", "", vec![], vec![]),
        &execute(""),
        &Sync,
    ]);
    let shape =
        RowDescription { fields: vec![field("id", 16400, 1, 23), field("account_number", 16400, 2, 25)] };
    let server = cat(&[
        &ParseComplete,
        &BindComplete,
        &shape,
        &DataRow { values: vec![Some(b("7")), Some(b("DE-000123"))] },
        &tag("SELECT 1"),
        &ready(b'I'),
    ]);
    let accounts = TableInfo {
        schema: "public".into(),
        name: "accounts".into(),
        columns: [(1, "id".to_string()), (2, "account_number".to_string())].into_iter().collect(),
    };
    let mut s = Session::new(MAX);
    s.set_masker(Some(masker(&["*.account_number"])));
    let (fwd, _) = s.feed_client(&client, 1).unwrap();
    let upstream = fwd.to_bytes(&client);
    let describe = cat(&[&Describe { target: Target::Portal, name: b("") }]);
    let at = upstream.windows(describe.len()).position(|w| w == &describe[..]).expect("a Describe was added");
    assert!(upstream[at + describe.len()..].starts_with(&cat(&[&execute("")])), "right before the Execute");
    let (out, pauses) = feed_resolving(&mut s, &server, 4, &[(16400, accounts)]);
    assert_eq!(pauses, 1);
    let expected = cat(&[
        &ParseComplete,
        &BindComplete,
        &DataRow { values: vec![Some(b("7")), Some(b("*****"))] },
        &tag("SELECT 1"),
        &ready(b'I'),
    ]);
    assert_eq!(out, &expected[..], "the added Describe's answer is not forwarded; the row is masked");
    assert_eq!(s.pending(), 0);
}

#[test]
fn a_column_added_after_the_first_look_up_is_looked_up_again_once() {
    let client = cat(&[&query("select * from t"), &query("select * from t")]);
    let before = RowDescription { fields: vec![field("id", 16400, 1, 23)] };
    let after =
        RowDescription { fields: vec![field("id", 16400, 1, 23), field("account_number", 16400, 2, 25)] };
    let server = cat(&[
        &before,
        &DataRow { values: vec![Some(b("1"))] },
        &tag("SELECT 1"),
        &ready(b'I'),
        &after,
        &DataRow { values: vec![Some(b("1")), Some(b("DE-000123"))] },
        &tag("SELECT 1"),
        &ready(b'I'),
    ]);
    let table = |cols: &[(i16, &str)]| TableInfo {
        schema: "public".into(),
        name: "t".into(),
        columns: cols.iter().map(|(n, c)| (*n, c.to_string())).collect(),
    };
    let mut s = Session::new(MAX);
    s.set_masker(Some(masker(&["*.account_number"])));
    s.feed_client(&client, 1).unwrap();
    // the first answer predates the new column; the second knows it
    let (first, _) = s.feed_server(&server, 2).unwrap();
    assert!(first.to_bytes(&server).len() < server.len(), "paused at the first row");
    let request = s.catalog_request().cloned().unwrap();
    assert_eq!(request.tables, [16400]);
    s.resolve(vec![(16400, Some(table(&[(1, "id")])))], vec![], None);
    let empty = Bytes::new();
    let (out, _) = s.feed_server(&empty, 3).unwrap();
    let mut all = first.to_bytes(&server).to_vec();
    all.extend_from_slice(&out.to_bytes(&empty));
    let request = s.catalog_request().cloned().expect("the unknown column asks again");
    assert_eq!(request.tables, [16400]);
    s.resolve(vec![(16400, Some(table(&[(1, "id"), (2, "account_number")])))], vec![], None);
    let (out, _) = s.feed_server(&empty, 4).unwrap();
    all.extend_from_slice(&out.to_bytes(&empty));
    assert!(s.catalog_request().is_none());
    let text = String::from_utf8_lossy(&all);
    assert!(!text.contains("DE-000123") && text.contains("*****"), "{text}");
}
