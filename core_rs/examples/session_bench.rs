//! Cost of `Session::feed_server` for a 20-row, 14-column result with and without masking.
//! `cargo run --release -p hoopgw-core --example session_bench`

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use hoopgw_core::mask::{MaskConfig, Masker, Style};
use hoopgw_core::pg::Session;

fn frame(code: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![code];
    v.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn main() {
    let types: [u32; 14] = [23, 20, 25, 25, 25, 25, 25, 25, 25, 1700, 1082, 1184, 25, 25];
    let mut rd = 14i16.to_be_bytes().to_vec();
    for (i, t) in types.iter().enumerate() {
        rd.extend_from_slice(format!("c{i}\0").as_bytes());
        rd.extend_from_slice(&0u32.to_be_bytes());
        rd.extend_from_slice(&0i16.to_be_bytes());
        rd.extend_from_slice(&t.to_be_bytes());
        rd.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0]);
    }
    let mut server = frame(b'T', &rd);
    for r in 0..20 {
        let values: [String; 14] = [
            format!("{r}"),
            "123456789".into(),
            "DE-0042-7781".into(),
            "Carol Danvers".into(),
            "4111 1111 1111 1111".into(),
            "123-45-6789".into(),
            "carol@example.com".into(),
            "DE89370400440532013000".into(),
            "+1 415 555 2671".into(),
            "1234.56".into(),
            "2024-03-01".into(),
            "2024-03-01 12:00:00+00".into(),
            "active".into(),
            "monthly fee".into(),
        ];
        let mut b = 14i16.to_be_bytes().to_vec();
        for v in &values {
            b.extend_from_slice(&(v.len() as i32).to_be_bytes());
            b.extend_from_slice(v.as_bytes());
        }
        server.extend(frame(b'D', &b));
    }
    server.extend(frame(b'C', b"SELECT 20\0"));
    server.extend(frame(b'Z', b"I"));
    let server = Bytes::from(server);
    let query = Bytes::from(frame(b'Q', b"select * from t\0"));
    let cfg = MaskConfig {
        detectors: ["credit_card", "us_ssn", "iban", "email", "phone"]
            .iter()
            .map(|d| (d.to_string(), Style::Last4))
            .collect(),
        ..MaskConfig::default()
    };
    let masker = Arc::new(Masker::new(cfg).unwrap());
    for masked in [false, true] {
        let mut s = Session::new(1 << 20);
        if masked {
            s.set_masker(Some(masker.clone()));
        }
        let n = 100_000;
        let t = Instant::now();
        let mut out = 0;
        for _ in 0..n {
            s.feed_client(&query, 1).unwrap();
            let (fwd, done) = s.feed_server(&server, 2).unwrap();
            out += fwd.len(server.len()) + done.len();
        }
        let per = t.elapsed().as_nanos() as f64 / n as f64;
        println!("masking {masked:5}: {per:8.0} ns per 20-row query ({:.0} ns/value) [{out}]", per / 280.0);
    }
}
