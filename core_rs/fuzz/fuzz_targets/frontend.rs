//! PgSession::feed_client with arbitrary chunking: never panics, forwards only what it was given.
#![no_main]

use hoopgw_core::pg::Session;
use libfuzzer_sys::fuzz_target;

mod chunks;

fuzz_target!(|data: &[u8]| {
    let mut session = Session::new(4096);
    let mut forwarded = 0;
    let mut fed = 0;
    for piece in chunks::chunks(data) {
        fed += piece.len();
        match session.feed_client(&piece, 0) {
            Ok((fwd, _)) => forwarded += fwd.len(piece.len()),
            Err(_) => return,
        }
        assert!(forwarded <= fed);
    }
});
