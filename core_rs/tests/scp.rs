//! scp: network input never panics. Deterministic pseudo-random streams of plausible and broken
//! control lines with file bytes, cut at random boundaries, must give the same records as the
//! same stream fed at once.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use hoopgw_core::ssh::{ScpRecord, ScpStream};

mod rng;
use rng::Rng;

fn stream(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.below(12) {
        match rng.below(9) {
            0 => out.extend_from_slice(b"T1700000000 0 1700000001 0\n"),
            1 => out.extend_from_slice(format!("D0755 0 d{}\n", rng.below(3)).as_bytes()),
            2 => out.extend_from_slice(b"E\n"),
            3 => out.push(0),
            4 => out.extend_from_slice(b"\x01scp: oops\n"),
            5 => {
                let n = rng.below(50);
                out.extend_from_slice(format!("C0644 {n} f{}\n", rng.below(3)).as_bytes());
                out.extend((0..n).map(|_| (rng.next() & 0xff) as u8));
                out.push(0);
            }
            _ => {
                let n = rng.below(30);
                out.extend((0..n).map(|_| b"CDET \n0123456789\x01\x02/.\0x"[rng.below(18)]));
            }
        }
    }
    out
}

#[test]
fn random_streams_never_panic_and_splits_do_not_matter() {
    let mut rng = Rng(0x5c9);
    let mut files = 0;
    for _ in 0..20_000 {
        let data = stream(&mut rng);
        let mut whole = ScpStream::new();
        let mut expected = whole.feed(&data);
        expected.extend(whole.finish());
        let mut s = ScpStream::new();
        let mut got = Vec::new();
        let mut rest = &data[..];
        while !rest.is_empty() {
            let (a, b) = rest.split_at(1 + rng.below(rest.len().min(16)));
            got.extend(s.feed(a));
            rest = b;
        }
        got.extend(s.finish());
        assert_eq!(got, expected, "{data:?}");
        files += got.iter().filter(|r| matches!(r, ScpRecord::File { .. })).count();
        let errors = got.iter().filter(|r| matches!(r, ScpRecord::Error { message } if message.starts_with("scp protocol violation"))).count();
        assert!(errors <= 1);
    }
    assert!(files > 1000, "the generator must produce files ({files})");
}

#[test]
fn long_lines_are_bounded() {
    let mut s = ScpStream::new();
    let mut errors = 0;
    for _ in 0..10_000 {
        errors += s.feed(&[b'C'; 1024]).len();
    }
    assert_eq!(errors, 1);
}
