//! A session with a policy hook (denials, cache, failing checks) over arbitrary client and server
//! streams, and the SQL normalizer over arbitrary text: never panics.
#![no_main]

use bytes::Bytes;
use hoopgw_core::pg::policy::error_response;
use hoopgw_core::pg::{normalize, CheckFailed, Policy, Session, SqlCache, Verdict};
use libfuzzer_sys::fuzz_target;

mod chunks;

/// Denies statements whose text has an odd length, fails on a `!`, caches shapes with a `c`.
fn check(sql: Option<&[u8]>, cached: Option<u32>, name: Option<&[u8]>) -> Result<Verdict, CheckFailed> {
    let Some(sql) = sql else {
        // a Bind (denied for odd names) or a FunctionCall (allowed)
        let deny = name.is_some_and(|n| n.len() % 2 == 1);
        let error = deny.then(|| error_response("42501", "denied"));
        return Ok(Verdict { mask: cached.unwrap_or(2), cacheable: false, error });
    };
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
    session.set_param_guard(vec![(b"standard_conforming_strings".to_vec(), vec![b"on".to_vec()])]);
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
        let _ = (session.pending(), session.in_copy(), session.tx_status(), session.tripped());
        // the allowed classes change now and then (a time window)
        session.set_allow_mask(if piece.len() % 3 == 0 { 1 } else { 3 });
    }
});
