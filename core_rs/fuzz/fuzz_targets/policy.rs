//! A session with a policy hook (denials, cache, failing checks) over arbitrary client and server
//! streams, and the SQL normalizer over arbitrary text: never panics.
#![no_main]

use bytes::Bytes;
use hoopgw_core::pg::policy::error_response;
use hoopgw_core::pg::{normalize, CheckFailed, Policy, Session, SqlCache, Verdict};
use libfuzzer_sys::fuzz_target;

mod chunks;

/// Denies statements whose text has an odd length, fails on a `!`, caches shapes with a `c`.
fn check(sql: Option<&[u8]>, _cached: Option<u32>, _name: Option<&[u8]>) -> Result<Verdict, CheckFailed> {
    let Some(sql) = sql else { return Ok(Verdict { mask: 2, cacheable: false, error: None }) };
    if sql.contains(&b'!') {
        return Err(CheckFailed("!".into()));
    }
    let mask = if sql.len() % 2 == 1 { 2 } else { 1 };
    let error = (mask == 2).then(|| error_response("42501", "denied"));
    let cacheable = sql.contains(&b'c');
    // a malformed answer now and then
    let error = if sql.contains(&b'm') { Some(Bytes::from_static(b"E\0\0")) } else { error };
    Ok(Verdict { mask, cacheable, error })
}

fuzz_target!(|data: &[u8]| {
    if let Some(key) = normalize(data) {
        assert!(key.len() <= data.len());
    }
    let Some((split, rest)) = data.split_first_chunk::<2>() else { return };
    let at = usize::from(u16::from_le_bytes(*split)).min(rest.len());
    let (client, server) = rest.split_at(at);
    let mut session = Session::new(4096);
    session.set_policy(Some(Policy::new(Some(SqlCache::new(4)), Box::new(check))), 1);
    for piece in chunks::chunks(client) {
        if session.feed_client(&piece, 0).is_err() {
            break;
        }
        let _ = session.take_reply();
    }
    for piece in chunks::chunks(server) {
        if session.feed_server(&piece, 1).is_err() {
            return;
        }
        let _ = (session.pending(), session.in_copy(), session.tx_status());
    }
});
