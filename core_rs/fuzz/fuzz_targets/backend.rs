//! PgSession::feed_server with arbitrary chunking, after a client stream that sets up the FIFO.
#![no_main]

use hoopgw_core::pg::Session;
use libfuzzer_sys::fuzz_target;

mod chunks;

fuzz_target!(|data: &[u8]| {
    // the first two bytes choose where the client stream ends and the server stream begins
    let Some((split, rest)) = data.split_first_chunk::<2>() else { return };
    let at = usize::from(u16::from_le_bytes(*split)).min(rest.len());
    let (client, server) = rest.split_at(at);
    let mut session = Session::new(4096);
    for piece in chunks::chunks(client) {
        if session.feed_client(&piece, 0).is_err() {
            break;
        }
    }
    let mut forwarded = 0;
    let mut fed = 0;
    for piece in chunks::chunks(server) {
        fed += piece.len();
        match session.feed_server(&piece, 1) {
            Ok((fwd, _)) => forwarded += fwd.len(piece.len()),
            Err(_) => return,
        }
        assert!(forwarded <= fed);
        let _ = (session.pending(), session.in_copy(), session.tx_status());
    }
});
