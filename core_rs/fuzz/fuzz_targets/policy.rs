//! A session with a policy hook (denials, holds released or rejected, cache, failing checks) over
//! arbitrary client and server streams, and the SQL normalizer over arbitrary text: never panics.
#![no_main]

use bytes::Bytes;
use hoopgw_core::pg::policy::error_response;
use hoopgw_core::pg::{normalize, CheckFailed, Policy, Session, SqlCache, Verdict};
use libfuzzer_sys::fuzz_target;

mod chunks;

/// Denies statements whose text has an odd length, fails on a `!`, caches shapes with a `c`,
/// holds statements with an `h` and Binds of names with an `h`.
fn check(sql: Option<&[u8]>, cached: Option<u32>, name: Option<&[u8]>) -> Result<Verdict, CheckFailed> {
    let Some(sql) = sql else {
        // a Bind (denied for odd names) or a FunctionCall (allowed)
        let deny = name.is_some_and(|n| n.len() % 2 == 1);
        let error = deny.then(|| error_response("42501", "denied"));
        let hold = name.is_some_and(|n| n.contains(&b'h'));
        return Ok(Verdict { mask: cached.unwrap_or(2), cacheable: false, error, hold });
    };
    if sql.contains(&b'!') {
        return Err(CheckFailed("!".into()));
    }
    let mask = if sql.len() % 2 == 1 { 2 } else { 1 };
    let error = (mask == 2).then(|| error_response("42501", "denied"));
    let cacheable = sql.contains(&b'c');
    // a malformed answer now and then
    let error = if sql.contains(&b'm') { Some(Bytes::from_static(b"E\0\0")) } else { error };
    let hold = sql.contains(&b'h');
    Ok(Verdict { mask, cacheable, error, hold })
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
    // held statements are released, rejected (now and then with a malformed answer) or kept,
    // by the size of the read
    let decide = |session: &mut Session, n: usize| -> bool {
        if session.held().is_none() {
            return true;
        }
        let _ = session.held_bytes();
        let result = match n % 4 {
            0 => session.release(2),
            1 => session.reject(error_response("42501", "rejected"), 2),
            2 => session.reject(Bytes::from_static(b"E"), 2),
            _ => return true,
        };
        let _ = session.take_reply();
        result.is_ok()
    };
    for piece in chunks::chunks(client) {
        if session.feed_client(&piece, 0).is_err() {
            break;
        }
        let _ = session.take_reply();
        if !decide(&mut session, piece.len()) {
            break;
        }
    }
    for piece in chunks::chunks(server) {
        if session.feed_server(&piece, 1).is_err() {
            return;
        }
        let _ = (session.pending(), session.in_copy(), session.tx_status(), session.tripped());
        if !decide(&mut session, piece.len() / 2) {
            return;
        }
        // the allowed classes change now and then (a time window)
        session.set_allow_mask(if piece.len() % 3 == 0 { 1 } else { 3 });
    }
});
