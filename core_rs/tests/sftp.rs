//! SFTP: network input never panics and memory stays bounded. Deterministic pseudo-random
//! streams (plausible packets with lying lengths and fields, and noise) cut at random
//! boundaries through both directions of a session.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use hoopgw_core::ssh::sftp::wire::status_packet;
use hoopgw_core::ssh::SftpSession;

mod rng;
use rng::Rng;

const TYPES: &[u8] = &[
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 101, 102, 103, 104, 105, 200, 201,
    0, 99, 255,
];
const EXTENSIONS: &[&[u8]] = &[
    b"posix-rename@openssh.com",
    b"hardlink@openssh.com",
    b"statvfs@openssh.com",
    b"lsetstat@openssh.com",
    b"x",
];

/// A small field: a string with a plausible (or lying) length, or a number.
fn field(rng: &mut Rng, out: &mut Vec<u8>) {
    match rng.below(6) {
        0 => out.extend_from_slice(&(rng.next() as u32).to_be_bytes()),
        1 => {
            let ext = EXTENSIONS[rng.below(EXTENSIONS.len())];
            out.extend_from_slice(&(ext.len() as u32).to_be_bytes());
            out.extend_from_slice(ext);
        }
        2 => out.extend_from_slice(&(rng.below(4) as u32).to_be_bytes()),
        _ => {
            let n = rng.below(12);
            let declared = if rng.below(8) == 0 { rng.below(300) } else { n };
            out.extend_from_slice(&(declared as u32).to_be_bytes());
            out.extend((0..n).map(|_| (rng.next() & 0xff) as u8));
        }
    }
}

/// `client`: request ids mostly fresh (a pending id reused ends the session), rarely a repeat.
fn stream(rng: &mut Rng, client: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..rng.below(16) {
        let mut body = vec![TYPES[rng.below(TYPES.len())]];
        // few request ids, so that replies match requests
        let id = if client && rng.below(20) != 0 { i } else { rng.below(16) };
        body.extend_from_slice(&(id as u32).to_be_bytes());
        for _ in 0..rng.below(5) {
            field(rng, &mut body);
        }
        let declared = match rng.below(30) {
            0 => rng.next() as u32,
            1 => 0,
            2 => body.len() as u32 + 1,
            _ => body.len() as u32,
        };
        out.extend_from_slice(&declared.to_be_bytes());
        out.extend_from_slice(&body);
    }
    if rng.below(5) == 0 {
        let n = rng.below(20);
        out.extend((0..n).map(|_| (rng.next() & 0xff) as u8));
    }
    out
}

fn cut<'a>(rng: &mut Rng, data: &'a [u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let (a, b) = rest.split_at(1 + rng.below(rest.len().min(24)));
        out.push(a);
        rest = b;
    }
    out
}

#[test]
fn random_streams_never_panic() {
    let mut rng = Rng(0x0005_eed0_f5f7);
    let mut ok = 0;
    let mut recs = 0;
    for _ in 0..20_000 {
        let mut s = SftpSession::with_limits(4096, 8, 4);
        let client = stream(&mut rng, true);
        let server = stream(&mut rng, false);
        let (cs, ss) = (cut(&mut rng, &client), cut(&mut rng, &server));
        let mut forwarded = 0;
        for i in 0..cs.len().max(ss.len()) {
            if let Some(c) = cs.get(i) {
                if let Ok(chunks) = s.feed_client(c) {
                    forwarded += chunks.iter().map(|c| c.data.len()).sum::<usize>();
                    for chunk in chunks {
                        if let Some(op) = chunk.op {
                            if rng.below(3) == 0 {
                                let _ = s.refuse(op.id, "no");
                            }
                        }
                    }
                }
            }
            if let Some(b) = ss.get(i) {
                if let Ok(r) = s.feed_server(b) {
                    ok += 1;
                    recs += r.len();
                }
            }
            let (cb, sb) = s.buffered();
            assert!(cb <= 4 + 4096 && sb <= 4 + 4096, "buffers are bounded by the packet guard");
        }
        assert!(forwarded <= client.len());
        recs += s.finish().len();
    }
    assert!(recs > 1000, "the generator must complete operations ({recs})");
    assert!(ok > 1000, "the generator must reach past the framing checks ({ok})");
}

#[test]
fn pure_noise_never_panics() {
    let mut rng = Rng(42);
    for _ in 0..20_000 {
        let n = rng.below(64);
        let data: Vec<u8> = (0..n).map(|_| (rng.next() & 0xff) as u8).collect();
        let mut s = SftpSession::default();
        let _ = s.feed_client(&data);
        let _ = s.feed_server(&data);
        let _ = s.finish();
    }
    // the status encoder never panics either, whatever the message
    let huge = "x".repeat(200_000);
    assert!(status_packet(1, 3, &huge).len() < 70_000);
}
