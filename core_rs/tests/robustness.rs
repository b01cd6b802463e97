//! Network input never panics: deterministic pseudo-random streams (valid messages, mutated
//! messages and noise) cut at random boundaries through every decoder and both session directions.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use bytes::Bytes;
use hoopgw_core::pg::messages::startup::decode_startup;
use hoopgw_core::pg::messages::{self as m, FromBytes};
use hoopgw_core::pg::{Framer, Session};

/// xorshift64*: small, deterministic, good enough for fuzz-style coverage.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

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
