//! The SQL policy hook of a session: which statements go to the server.
//!
//! The gateway classifies statements (Python, with PostgreSQL's own parser) into a class mask and
//! decides on them; the session asks it through a [`Check`], per frontend message after
//! authentication (also inside a COPY-in stream, where a bad row may end the copy on the
//! server's side before the gateway knows):
//!
//! - `Query`, and `Parse` of the unnamed statement: the key of the SQL's shape
//!   ([`normalize`]) is looked up in the shared [`SqlCache`]. A cached mask inside the session's
//!   allowed mask (`mask & !allow_mask == 0`) forwards the message without calling the check: the
//!   hot path. Otherwise the check runs with the cached mask (if any) and its verdict is cached
//!   when it says the classification does not depend on literal contents.
//! - `Parse` of a named statement: always checked (the gateway tracks named statements).
//! - `FunctionCall`: always checked, without SQL.
//!
//! A denied message is not forwarded; the session answers it itself, at its place in the response
//! stream (see `Session`): the check's ErrorResponse, then ReadyForQuery for Query and FunctionCall;
//! for Parse the client's messages up to the next Sync are dropped. A check that fails denies.
//!
//! A held message ([`Verdict::hold`]) is not forwarded either, and neither is anything the client
//! sends after it: the session keeps the bytes until the caller decides, with
//! `Session::release` (the message goes on as if allowed) or `Session::reject` (answered like a
//! denial); what followed it is then processed as usual.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use super::frame::{frame_len, HEADER_LEN};
use super::sql::{normalize, SqlCache};

/// The message of the ErrorResponse sent when the check itself failed.
pub const CHECK_FAILED_MESSAGE: &str = "the gateway could not check this statement";

/// What the check says about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The statement's classes.
    pub mask: u32,
    /// Whether the classes hold for every statement of the same shape (literal contents aside).
    pub cacheable: bool,
    /// `None`: forward (or hold). Otherwise deny, answering with these bytes (an encoded
    /// ErrorResponse); a denial wins over `hold`.
    pub error: Option<Bytes>,
    /// Hold the message (and everything the client sends after it) until the caller releases or
    /// rejects it (`Session::release`, `Session::reject`).
    pub hold: bool,
}

/// The check could not decide (the message is denied).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("the policy check failed: {0}")]
pub struct CheckFailed(pub String);

/// Classifies and decides on a message: `sql` (None for FunctionCall), the mask cached for its
/// shape when there is one, and the statement name of a named Parse.
pub trait Check: Send + Sync {
    fn check(
        &mut self,
        sql: Option<&[u8]>,
        cached: Option<u32>,
        name: Option<&[u8]>,
    ) -> Result<Verdict, CheckFailed>;
}

impl<F> Check for F
where
    F: FnMut(Option<&[u8]>, Option<u32>, Option<&[u8]>) -> Result<Verdict, CheckFailed> + Send + Sync,
{
    fn check(
        &mut self,
        sql: Option<&[u8]>,
        cached: Option<u32>,
        name: Option<&[u8]>,
    ) -> Result<Verdict, CheckFailed> {
        self(sql, cached, name)
    }
}

/// A session's policy: the shared cache (None: every statement is checked) and the check.
pub struct Policy {
    cache: Option<SqlCache>,
    check: Box<dyn Check>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").field("cache", &self.cache).finish_non_exhaustive()
    }
}

/// What to do with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    Forward,
    /// Deny, answering with this ErrorResponse.
    Deny(Bytes),
    /// Hold until the caller decides.
    Hold,
}

impl Policy {
    pub fn new(cache: Option<SqlCache>, check: Box<dyn Check>) -> Self {
        Self { cache, check }
    }

    /// A Query (`name` None), or a Parse (`name`: its statement name, empty for the unnamed
    /// statement); with the statement's classes when they are known. Named Parses are always
    /// checked (the caller tracks what each name holds).
    pub(crate) fn statement(
        &mut self,
        sql: &[u8],
        name: Option<&[u8]>,
        allow_mask: u32,
    ) -> (Decision, Option<u32>) {
        let key = self.cache.as_ref().and_then(|_| normalize(sql));
        let cached = match (&self.cache, &key) {
            (Some(cache), Some(key)) => cache.get(key),
            _ => None,
        };
        if name.is_none_or(<[u8]>::is_empty) && cached.is_some_and(|mask| mask & !allow_mask == 0) {
            return (Decision::Forward, cached);
        }
        let verdict = self.check.check(Some(sql), cached, name);
        if let (Ok(v), Some(cache), Some(key)) = (&verdict, &self.cache, &key) {
            if v.cacheable {
                cache.insert(key, v.mask);
            }
        }
        let mask = verdict.as_ref().ok().map(|v| v.mask);
        (decide(verdict), mask)
    }

    /// A Bind of `statement`: `mask` its classes when its Parse was checked (None: a statement
    /// this session did not Parse, e.g. from a SQL PREPARE). The check gets no SQL and the name.
    pub(crate) fn bind(&mut self, mask: Option<u32>, statement: &[u8]) -> Decision {
        decide(self.check.check(None, mask, Some(statement)))
    }

    /// A FunctionCall.
    pub(crate) fn function_call(&mut self) -> Decision {
        decide(self.check.check(None, None, None))
    }
}

fn decide(verdict: Result<Verdict, CheckFailed>) -> Decision {
    match verdict {
        Ok(Verdict { error: None, hold: false, .. }) => Decision::Forward,
        Ok(Verdict { error: None, hold: true, .. }) => Decision::Hold,
        Ok(Verdict { error: Some(error), .. }) => denial(error),
        Err(_) => Decision::Deny(error_response("XX000", CHECK_FAILED_MESSAGE)),
    }
}

/// A denial answering with `error`, or with the check-failed error when `error` is not an
/// ErrorResponse (optionally after NoticeResponses).
pub(crate) fn denial(error: Bytes) -> Decision {
    if is_error_response(&error) {
        Decision::Deny(error)
    } else {
        Decision::Deny(error_response("XX000", CHECK_FAILED_MESSAGE))
    }
}

/// Whether `data` is whole backend messages (NoticeResponse / ErrorResponse), the last an
/// ErrorResponse: what a denial may answer with.
fn is_error_response(data: &[u8]) -> bool {
    let mut pos = 0;
    let mut last = 0;
    while pos < data.len() {
        let Some(header) = data.get(pos..pos + HEADER_LEN).and_then(|h| <[u8; HEADER_LEN]>::try_from(h).ok())
        else {
            return false;
        };
        let Ok(total) = frame_len(header, data.len()) else { return false };
        if !matches!(header[0], b'E' | b'N') || pos + total > data.len() {
            return false;
        }
        last = header[0];
        pos += total;
    }
    last == b'E'
}

/// An ErrorResponse of severity ERROR.
pub fn error_response(sqlstate: &str, message: &str) -> Bytes {
    let mut body = BytesMut::new();
    for (code, value) in [(b'S', "ERROR"), (b'V', "ERROR"), (b'C', sqlstate), (b'M', message)] {
        body.put_u8(code);
        body.put_slice(value.as_bytes());
        body.put_u8(0);
    }
    body.put_u8(0);
    let mut out = BytesMut::with_capacity(HEADER_LEN + body.len());
    out.put_u8(b'E');
    out.put_u32(u32::try_from(body.len() + 4).unwrap_or(u32::MAX));
    out.put_slice(&body);
    out.freeze()
}

/// A ReadyForQuery with transaction status `status`.
pub fn ready_for_query(status: u8) -> [u8; 6] {
    [b'Z', 0, 0, 0, 5, status]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::pg::messages::error_notice::{ErrorResponse, Fields, NoticeResponse};
    use crate::pg::messages::ToBytes;

    #[test]
    fn encodes_like_the_message_codec() {
        let ours = error_response("XX000", CHECK_FAILED_MESSAGE);
        let codec = ErrorResponse(Fields::new("ERROR", "XX000", CHECK_FAILED_MESSAGE, None, None));
        assert_eq!(ours, codec.to_bytes().unwrap());
    }

    #[test]
    fn only_error_responses_answer_a_denial() {
        let e = error_response("42501", "no");
        let n = NoticeResponse(Fields::new("NOTICE", "00000", "x", None, None)).to_bytes().unwrap();
        assert!(is_error_response(&e));
        assert!(is_error_response(&[&n[..], &e[..]].concat()));
        assert!(!is_error_response(&n));
        assert!(!is_error_response(b""));
        assert!(!is_error_response(&e[..e.len() - 1]));
        assert!(!is_error_response(&[&e[..], b"Z"].concat()));
        assert!(!is_error_response(&ready_for_query(b'I')));
    }
}
