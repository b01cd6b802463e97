//! Result previews: the first rows of each statement, as forwarded to the client (masked).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{b, bind, cat, execute, parse, query, ready, row, server_error, tag};
use hoopgw_core::mask::{MaskConfig, Masker, Style};
use hoopgw_core::pg::mask::TableInfo;
use hoopgw_core::pg::messages::bind::Bind;
use hoopgw_core::pg::messages::complete::{BindComplete, ParseComplete};
use hoopgw_core::pg::messages::copy::{CopyData, CopyDirection, CopyDone, CopyResponse};
use hoopgw_core::pg::messages::data_row::DataRow;
use hoopgw_core::pg::messages::describe::{Describe, Target};
use hoopgw_core::pg::messages::execute::Execute;
use hoopgw_core::pg::messages::parameter_description::ParameterDescription;
use hoopgw_core::pg::messages::portal_suspended::PortalSuspended;
use hoopgw_core::pg::messages::row_description::{Field, RowDescription};
use hoopgw_core::pg::messages::sync_flush_terminate::Sync;
use hoopgw_core::pg::preview::PREVIEW_BYTES;
use hoopgw_core::pg::{Preview, Session, Statement};

const MAX: usize = 1 << 20;
const CARD: &str = "4111 1111 1111 1111";

fn field(name: &str, type_oid: u32, format: i16) -> Field {
    Field { name: b(name), table_oid: 0, column: 0, type_oid, type_size: -1, type_modifier: -1, format }
}

fn rd(names: &[&str]) -> RowDescription {
    RowDescription { fields: names.iter().map(|n| field(n, 25, 0)).collect() }
}

fn data(values: &[Option<&str>]) -> DataRow {
    DataRow { values: values.iter().map(|v| v.map(b)).collect() }
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

/// A session with previews of `rows` rows cut at `chars` characters.
fn session(rows: usize, chars: usize, masker: Option<Arc<Masker>>) -> Session {
    let mut s = Session::new(MAX);
    s.set_masker(masker);
    s.set_preview(rows, chars);
    s
}

/// Feeds the client stream whole, then the server stream in pieces of `step` bytes; returns what
/// was forwarded to the client and the statements.
fn feed(s: &mut Session, client: &Bytes, server: &Bytes, step: usize) -> (Vec<u8>, Vec<Statement>) {
    s.feed_client(client, 1).unwrap();
    let mut out = Vec::new();
    let mut done = Vec::new();
    for piece in server.chunks(step) {
        let piece = Bytes::copy_from_slice(piece);
        let (fwd, d) = s.feed_server(&piece, 2).unwrap();
        out.extend_from_slice(&fwd.to_bytes(&piece));
        done.extend(d);
    }
    (out, done)
}

fn preview(st: &Statement) -> &Preview {
    assert!(st.preview.is_some(), "no preview: {st:?}");
    st.preview.as_ref().unwrap()
}

fn masker(columns: &[&str]) -> Arc<Masker> {
    let cfg = MaskConfig {
        detectors: vec![("credit_card".into(), Style::Last4), ("email".into(), Style::Redact)],
        columns: columns.iter().map(|c| (c.to_string(), Style::Redact)).collect(),
        ..MaskConfig::default()
    };
    Arc::new(Masker::new(cfg).unwrap())
}

#[test]
fn a_query_keeps_its_columns_and_first_rows_nulls_included() {
    let client = cat(&[&query("select id, note from t")]);
    let server = cat(&[
        &rd(&["id", "note"]),
        &data(&[Some("1"), Some("first")]),
        &data(&[Some("2"), None]),
        &tag("SELECT 2"),
        &ready(b'I'),
    ]);
    for step in [server.len(), 3, 1] {
        let (out, done) = feed(&mut session(5, 200, None), &client, &server, step);
        assert_eq!(out, &server[..], "forwarded unchanged");
        assert_eq!(done.len(), 1);
        let p = preview(&done[0]);
        assert_eq!(p.columns, ["id", "note"]);
        assert_eq!(p.rows, [vec![s("1"), s("first")], vec![s("2"), None]]);
        assert_eq!(done[0].rows, 2);
    }
}

#[test]
fn off_by_default_and_with_zero_rows() {
    let client = cat(&[&query("select 1")]);
    let server = cat(&[&rd(&["x"]), &row("1"), &tag("SELECT 1"), &ready(b'I')]);
    let (_, done) = feed(&mut Session::new(MAX), &client, &server, server.len());
    assert_eq!(done[0].preview, None);
    let (_, done) = feed(&mut session(0, 200, None), &client, &server, server.len());
    assert_eq!(done[0].preview, None);
}

#[test]
fn cut_at_n_rows_and_m_characters() {
    let client = cat(&[&query("select v from t"), &query("select 2")]);
    let mut msgs: Vec<DataRow> = (0..10).map(|i| data(&[Some(&format!("row-{i}-abcdefgh"))])).collect();
    msgs.push(data(&[Some("ab")]));
    let mut server = cat(&[&rd(&["a_long_column_name"])]).to_vec();
    for m in &msgs[..10] {
        server.extend_from_slice(&cat(&[m]));
    }
    server.extend_from_slice(&cat(&[&tag("SELECT 10"), &ready(b'I'), &rd(&["x"]), &msgs[10]]));
    server.extend_from_slice(&cat(&[&tag("SELECT 1"), &ready(b'I')]));
    let server = Bytes::from(server);
    let (_, done) = feed(&mut session(3, 8, None), &client, &server, 7);
    assert_eq!(done.len(), 2);
    let p = preview(&done[0]);
    assert_eq!(p.columns, ["a_long_c…"]);
    assert_eq!(p.rows, [[s("row-0-ab…")], [s("row-1-ab…")], [s("row-2-ab…")]]);
    assert_eq!(done[0].rows, 10, "all rows are counted");
    // the next statement gets its own preview
    assert_eq!(preview(&done[1]).rows, [[s("ab")]]);
}

#[test]
fn binary_values_are_hex_and_formats_come_from_bind() {
    // statement described, portal bound with binary results for the second column
    let client = cat(&[
        &parse("s", "select id, blob from t"),
        &Describe { target: Target::Statement, name: b("s") },
        &Bind {
            portal: b(""),
            statement: b("s"),
            param_formats: vec![],
            params: vec![],
            result_formats: vec![0, 1],
        },
        &execute(""),
        &Sync,
    ]);
    let server = cat(&[
        &ParseComplete,
        &ParameterDescription { types: vec![] },
        &RowDescription { fields: vec![field("id", 23, 0), field("blob", 17, 0)] },
        &BindComplete,
        &DataRow { values: vec![Some(b("7")), Some(Bytes::from_static(b"\x00\xab\xff"))] },
        &DataRow { values: vec![Some(b("8")), None] },
        &tag("SELECT 2"),
        &ready(b'I'),
    ]);
    let (_, done) = feed(&mut session(5, 200, None), &client, &server, 5);
    assert_eq!(done.len(), 1);
    let p = preview(&done[0]);
    assert_eq!(p.columns, ["id", "blob"]);
    assert_eq!(p.rows, [vec![s("7"), s("\\x00abff")], vec![s("8"), None]]);
}

#[test]
fn rows_of_unknown_shape_are_text_or_hex() {
    // an Execute of a portal never described (a cursor opened with DECLARE)
    let client = cat(&[&bind("", "s"), &execute("c"), &Sync]);
    let server = cat(&[
        &BindComplete,
        &DataRow { values: vec![Some(b("plain")), Some(Bytes::from_static(b"\xff\xfe"))] },
        &tag("FETCH 1"),
        &ready(b'I'),
    ]);
    let (_, done) = feed(&mut session(5, 200, None), &client, &server, server.len());
    let p = preview(&done[0]);
    assert!(p.columns.is_empty());
    assert_eq!(p.rows, [[s("plain"), s("\\xfffe")]]);
}

#[test]
fn a_preview_is_bounded_in_bytes() {
    let wide = "x".repeat(3000);
    let client = cat(&[&query("select a, b from t")]);
    let mut server = cat(&[&rd(&["a", "b"])]).to_vec();
    for _ in 0..100 {
        server.extend_from_slice(&cat(&[&data(&[Some(&wide), Some(&wide)])]));
    }
    server.extend_from_slice(&cat(&[&tag("SELECT 100"), &ready(b'I')]));
    let server = Bytes::from(server);
    let (_, done) = feed(&mut session(100, 10_000, None), &client, &server, 4096);
    let p = preview(&done[0]);
    assert_eq!(p.rows.len(), 1, "the budget is spent within the first row");
    let a = p.rows[0][0].as_deref().unwrap();
    let b2 = p.rows[0][1].as_deref().unwrap();
    assert_eq!(a, wide, "the first value fits whole");
    assert!(b2.ends_with('…') && b2.len() < wide.len(), "the second is cut at the budget");
    let total: usize = p.columns.iter().map(String::len).sum::<usize>()
        + p.rows.iter().flatten().flatten().map(String::len).sum::<usize>();
    assert!(total <= PREVIEW_BYTES + 3, "{total}");
    assert_eq!(done[0].rows, 100);
}

#[test]
fn no_preview_for_copy_or_commands_without_rows() {
    let copy_out = CopyResponse { direction: CopyDirection::Out, format: 0, column_formats: vec![0] };
    let client = cat(&[
        &query("copy t to stdout"),
        &query("insert into t values (1)"),
        &query("select 1 where false"),
        &query("select nope"),
    ]);
    let server = cat(&[
        &copy_out,
        &CopyData { data: b("1\n") },
        &CopyData { data: b("2\n") },
        &CopyDone,
        &tag("COPY 2"),
        &ready(b'I'),
        &tag("INSERT 0 1"),
        &ready(b'I'),
        &rd(&["x"]),
        &tag("SELECT 0"),
        &ready(b'I'),
        &server_error("42703", "column \"nope\" does not exist"),
        &ready(b'I'),
    ]);
    for masking in [None, Some(masker(&[]))] {
        let (_, done) = feed(&mut session(5, 200, masking), &client, &server, 3);
        assert_eq!(done.len(), 4);
        assert_eq!(done[0].rows, 2, "COPY rows are counted");
        assert!(done.iter().all(|d| d.preview.is_none()), "{done:?}");
    }
}

#[test]
fn a_multi_statement_query_previews_its_first_result_set_with_rows() {
    let client = cat(&[&query("insert into t values (1); select 'a'; select 'b'")]);
    let server = cat(&[
        &tag("INSERT 0 1"),
        &rd(&["first"]),
        &row("a"),
        &tag("SELECT 1"),
        &rd(&["second"]),
        &row("b"),
        &tag("SELECT 1"),
        &ready(b'I'),
    ]);
    let (_, done) = feed(&mut session(5, 200, None), &client, &server, server.len());
    let p = preview(&done[0]);
    assert_eq!((p.columns.as_slice(), p.rows.as_slice()), (&["first".to_string()][..], &[vec![s("a")]][..]));
}

#[test]
fn each_execute_of_a_suspended_portal_has_its_own_preview() {
    let client = cat(&[
        &parse("", "select n from t"),
        &bind("", ""),
        &Describe { target: Target::Portal, name: b("") },
        &Execute { portal: b(""), max_rows: 2 },
        &Execute { portal: b(""), max_rows: 2 },
        &Sync,
    ]);
    let server = cat(&[
        &ParseComplete,
        &BindComplete,
        &rd(&["n"]),
        &row("1"),
        &row("2"),
        &PortalSuspended,
        &row("3"),
        &tag("SELECT 1"),
        &ready(b'I'),
    ]);
    let (_, done) = feed(&mut session(1, 200, None), &client, &server, 2);
    assert_eq!(done.len(), 2);
    assert_eq!(preview(&done[0]).rows, [[s("1")]]);
    assert_eq!(preview(&done[1]).rows, [[s("3")]]);
    assert_eq!((done[0].rows, done[1].rows), (2, 1));
}

#[test]
fn previews_hold_masked_values_never_the_raw_ones() {
    let client = cat(&[&query(&format!("select card as \"{CARD}\", mail from t"))]);
    let server = cat(&[
        &rd(&[CARD, "mail"]),
        &data(&[Some(&format!("card {CARD}")), Some("bob@example.com")]),
        &data(&[Some("4111111111111111"), Some("no mail")]),
        &tag("SELECT 2"),
        &ready(b'I'),
    ]);
    for step in [server.len(), 4, 1] {
        let (out, done) = feed(&mut session(5, 200, Some(masker(&[]))), &client, &server, step);
        assert!(!String::from_utf8_lossy(&out).contains("bob@example.com"));
        let p = preview(&done[0]);
        let all = format!("{done:?}");
        assert!(!all.contains(CARD) && !all.contains("4111111111111111"), "{all}");
        assert!(!all.contains("bob@example.com"), "{all}");
        assert_eq!(p.columns, ["**** **** **** 1111", "mail"], "column names are masked too");
        assert_eq!(
            p.rows,
            [vec![s("card **** **** **** 1111"), s("*****")], vec![s("************1111"), s("no mail")]]
        );
    }
}

#[test]
fn column_rules_apply_to_previews_across_a_catalog_pause() {
    let client = cat(&[&query("select id, account_number from accounts")]);
    let shape = RowDescription {
        fields: vec![
            Field { table_oid: 16400, column: 1, ..field("id", 23, 0) },
            Field { table_oid: 16400, column: 2, ..field("account_number", 25, 0) },
        ],
    };
    let server = cat(&[&shape, &data(&[Some("7"), Some("DE-000123")]), &tag("SELECT 1"), &ready(b'I')]);
    let accounts = TableInfo {
        schema: "public".into(),
        name: "accounts".into(),
        columns: [(1, "id".to_string()), (2, "account_number".to_string())].into_iter().collect(),
    };
    let mut s2 = session(5, 200, Some(masker(&["*.account_number"])));
    s2.feed_client(&client, 1).unwrap();
    let mut done = Vec::new();
    let mut pauses = 0;
    for piece in server.chunks(5) {
        let piece = Bytes::copy_from_slice(piece);
        let (_, d) = s2.feed_server(&piece, 2).unwrap();
        done.extend(d);
        while s2.catalog_request().is_some() {
            pauses += 1;
            s2.resolve(vec![(16400, Some(accounts.clone()))], vec![], None);
            let (_, d) = s2.feed_server(&Bytes::new(), 3).unwrap();
            done.extend(d);
        }
    }
    assert_eq!(pauses, 1);
    assert_eq!(done.len(), 1);
    assert_eq!(preview(&done[0]).rows, [[s("7"), s("*****")]], "one row, masked, taken once");
}
