//! Network input never panics: deterministic pseudo-random streams (valid messages, mutated
//! messages and noise) cut at random boundaries through every decoder and both session directions.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use bytes::Bytes;
use hoopgw_core::pg::messages::startup::decode_startup;
use hoopgw_core::pg::messages::{self as m, FromBytes};
use hoopgw_core::pg::{Framer, Session};

mod rng;
use rng::Rng;

const TYPES: &[u8] = b"QPBEDCSHXdcfFpRKSZTDCIEnNAVt123sGHWv?\0";

/// A stream of frames with plausible headers and random (possibly lying) bodies.
fn stream(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.below(12) {
        let code = TYPES[rng.below(TYPES.len())];
        let body_len = rng.below(40);
        let mut body: Vec<u8> = (0..body_len).map(|_| (rng.next() & 0xff) as u8).collect();
        // sprinkle NULs and small counts so that decoders get past their first checks
        for b in body.iter_mut() {
            if rng.below(4) == 0 {
                *b = 0;
            } else if rng.below(6) == 0 {
                *b = 1;
            }
        }
        let declared = match rng.below(20) {
            0 => rng.next() as i32,
            1 => 3,
            _ => body_len as i32 + 4,
        };
        out.push(code);
        out.extend_from_slice(&declared.to_be_bytes());
        out.extend_from_slice(&body);
    }
    if rng.below(5) == 0 {
        let n = rng.below(20);
        out.extend((0..n).map(|_| (rng.next() & 0xff) as u8));
    }
    out
}

fn chunks(rng: &mut Rng, data: &[u8]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = 1 + rng.below(rest.len().min(24));
        let (a, b) = rest.split_at(n);
        out.push(Bytes::copy_from_slice(a));
        rest = b;
    }
    out
}

fn decode_all(body: &Bytes) {
    let _ = m::query::Query::from_bytes(body);
    let _ = m::parse::Parse::from_bytes(body);
    let _ = m::bind::Bind::from_bytes(body);
    let _ = m::execute::Execute::from_bytes(body);
    let _ = m::describe::Describe::from_bytes(body);
    let _ = m::close::Close::from_bytes(body);
    let _ = m::copy::CopyFail::from_bytes(body);
    let _ = m::copy::CopyResponse::decode(m::copy::CopyDirection::In, body);
    let _ = m::function_call::FunctionCall::from_bytes(body);
    let _ = m::function_call::FunctionCallResponse::from_bytes(body);
    let _ = m::password::Password::cleartext(body);
    let _ = m::password::SaslInitialResponse::from_bytes(body);
    let _ = m::authentication::Authentication::from_bytes(body);
    let _ = m::backend_key_data::BackendKeyData::from_bytes(body);
    let _ = m::parameter_status::ParameterStatus::from_bytes(body);
    let _ = m::ready_for_query::ReadyForQuery::from_bytes(body);
    let _ = m::row_description::RowDescription::from_bytes(body);
    let _ = m::data_row::DataRow::from_bytes(body);
    let _ = m::command_complete::CommandComplete::from_bytes(body);
    let _ = m::error_notice::ErrorResponse::from_bytes(body);
    let _ = m::notification::NotificationResponse::from_bytes(body);
    let _ = m::parameter_description::ParameterDescription::from_bytes(body);
    let _ = m::negotiate_protocol_version::NegotiateProtocolVersion::from_bytes(body);
}

#[test]
fn random_streams_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..4000 {
        let client = stream(&mut rng);
        let server = stream(&mut rng);
        let mut s = Session::new(256);
        for (c, v) in chunks(&mut rng, &client).iter().zip(chunks(&mut rng, &server).iter().cycle()) {
            if s.feed_client(c, 1).is_err() || s.feed_server(v, 2).is_err() {
                break;
            }
            let _ = (s.pending(), s.in_copy(), s.tx_status());
        }
        let mut f = Framer::new(256);
        for c in chunks(&mut rng, &server) {
            f.feed(&c);
            while let Ok(Some((_, body))) = f.next_message() {
                decode_all(&body);
            }
        }
        let _ = decode_startup(&client, 10_000);
        let mut startup = vec![0, 0, 0, (client.len() as u8).wrapping_add(8), 0, 3, 0, 0];
        startup.extend_from_slice(&client);
        let _ = decode_startup(&startup, 10_000);
        decode_all(&Bytes::from(client));
    }
}

/// A masker with every detector and column rules, so that every masking path runs.
fn masker() -> std::sync::Arc<hoopgw_core::mask::Masker> {
    use hoopgw_core::mask::{MaskConfig, Masker, Style, BUILTIN_DETECTORS};
    let cfg = MaskConfig {
        detectors: BUILTIN_DETECTORS.iter().map(|d| (d.to_string(), Style::Last4)).collect(),
        columns: vec![("*.secret".into(), Style::Redact), ("t.gone".into(), Style::Null)],
        hash_key: vec![7; 32],
        ..MaskConfig::default()
    };
    std::sync::Arc::new(Masker::new(cfg).unwrap())
}

fn frame(code: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![code];
    v.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// A random value that often holds something a detector finds.
fn value(rng: &mut Rng) -> Vec<u8> {
    const PIECES: &[&[u8]] = &[
        b"4111 1111 1111 1111",
        b"123-45-6789",
        b"DE89370400440532013000",
        b"a@b.example",
        b"\"",
        b"\\",
        b"{\"k\": ",
        b"}",
        b"12",
        b" ",
        b"\t",
        b",",
        b"\n",
        b"\xff\xfe",
        b"\0",
        b"password=x",
    ];
    let mut v = Vec::new();
    for _ in 0..rng.below(5) {
        v.extend_from_slice(PIECES[rng.below(PIECES.len())]);
    }
    v
}

/// A server stream of plausible result frames (shapes, rows, COPY data, notices) with lies mixed in.
fn result_stream(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.below(16) {
        let n = rng.below(4) as i16;
        match rng.below(8) {
            0 | 1 => {
                let mut b = n.to_be_bytes().to_vec();
                for i in 0..n {
                    b.extend_from_slice(b"col\0");
                    b.extend_from_slice(&[0, 0, 0x40, rng.below(3) as u8]); // table oid
                    b.extend_from_slice(&(i + 1).to_be_bytes());
                    let ty: u32 = [25, 23, 3802, 114, 16500, 1009][rng.below(6)];
                    b.extend_from_slice(&ty.to_be_bytes());
                    b.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
                    b.extend_from_slice(&(rng.below(2) as i16).to_be_bytes());
                }
                out.extend(frame(b'T', &b));
            }
            2 | 3 => {
                let cols = if rng.below(8) == 0 { n + 1 } else { n };
                let mut b = cols.to_be_bytes().to_vec();
                for _ in 0..n {
                    if rng.below(6) == 0 {
                        b.extend_from_slice(&(-1i32).to_be_bytes());
                    } else {
                        let v = value(rng);
                        b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        b.extend_from_slice(&v);
                    }
                }
                out.extend(frame(b'D', &b));
            }
            4 => out.extend(frame(b'H', &[rng.below(2) as u8, 0, 1, 0, 0])),
            5 => {
                let mut v =
                    if rng.below(3) == 0 { b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec() } else { vec![] };
                v.extend(value(rng));
                out.extend(frame(b'd', &v));
            }
            6 => {
                let mut b = b"SERROR\0C23505\0M".to_vec();
                b.extend(value(rng).into_iter().filter(|c| *c != 0));
                b.extend_from_slice(b"\0\0");
                out.extend(frame([b'E', b'N'][rng.below(2)], &b));
            }
            _ => out.extend(frame([b'C', b'Z', b'c'][rng.below(3)], b"I\0")),
        }
    }
    out
}

#[test]
fn masked_sessions_never_panic_and_keep_framing() {
    use hoopgw_core::pg::mask::{CopyFormat, CopyShape, FieldInfo, TableInfo};
    let masker = masker();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let (mut masked, mut pauses) = (0, 0);
    for round in 0..3000 {
        let client = [frame(b'Q', b"copy t to stdout\0"), frame(b'Q', b"select 1\0")].concat();
        let server = result_stream(&mut rng);
        let mut s = Session::new(1 << 16);
        s.set_masker(Some(masker.clone()));
        s.feed_client(&Bytes::from(client), 1).unwrap();
        let mut out = Vec::new();
        let mut failed = false;
        for piece in chunks(&mut rng, &server) {
            match s.feed_server(&piece, 2) {
                Ok((fwd, _)) => out.extend_from_slice(&fwd.to_bytes(&piece)),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
            while let Some(request) = s.catalog_request().cloned() {
                pauses += 1;
                let tables = request
                    .tables
                    .iter()
                    .filter(|_| rng.below(3) > 0)
                    .map(|oid| {
                        let columns =
                            [(1, "secret".to_string()), (2, "gone".to_string())].into_iter().collect();
                        (*oid, Some(TableInfo { schema: "public".into(), name: "t".into(), columns }))
                    })
                    .collect();
                let types = request.types.iter().map(|oid| (*oid, ['S', 'N', 'A'][rng.below(3)])).collect();
                let copy = request.copy.as_ref().filter(|_| round % 2 == 0).map(|_| CopyShape {
                    format: [CopyFormat::Text, CopyFormat::Csv, CopyFormat::Binary][rng.below(3)],
                    delimiter: b',',
                    quote: b'"',
                    escape: b'"',
                    null: vec![],
                    header: rng.below(2) == 0,
                    fields: (0..rng.below(3) as i16)
                        .map(|i| FieldInfo {
                            table_oid: 0x4000,
                            attnum: i + 1,
                            type_oid: 25,
                            label: Bytes::from_static(b"secret"),
                            format: 0,
                        })
                        .collect(),
                });
                s.resolve(tables, types, copy);
                let empty = Bytes::new();
                match s.feed_server(&empty, 3) {
                    Ok((fwd, _)) => out.extend_from_slice(&fwd.to_bytes(&empty)),
                    Err(_) => failed = true,
                }
            }
            let _ = (s.pending(), s.in_copy(), s.tx_status(), s.mask_counts());
        }
        if !failed {
            // framing survives masking: as many whole frames come out as went in, with the same types
            let frames = |data: &[u8]| {
                let mut f = Framer::new(1 << 20);
                f.feed(data);
                let mut codes = Vec::new();
                while let Ok(Some((code, _))) = f.next_message() {
                    codes.push(code);
                }
                codes
            };
            assert_eq!(frames(&out), frames(&server), "round {round}");
        }
        masked += s.mask_counts().iter().map(|(_, n)| n).sum::<u64>();
    }
    assert!(masked > 1000 && pauses > 100, "the generator reaches the masking paths: {masked} {pauses}");
}
