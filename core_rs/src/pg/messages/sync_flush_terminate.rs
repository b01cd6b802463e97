//! Sync, Flush and Terminate (F) messages: bodiless extended-protocol and session control.

use super::empty_message;

empty_message!(
    /// `S` (frontend): end of an extended-protocol batch; the server answers ReadyForQuery.
    Sync, b'S', "sync"
);
empty_message!(
    /// `H`: ask the server to flush its output; no response of its own.
    Flush, b'H', "flush"
);
empty_message!(
    /// `X`: the client is closing the session.
    Terminate, b'X', "terminate"
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::messages::test_util::round_trip;
    use crate::pg::messages::FromBytes;

    #[test]
    fn round_trip_and_reject_bodies() {
        assert_eq!(round_trip(&Sync), Sync);
        assert_eq!(round_trip(&Flush), Flush);
        assert_eq!(round_trip(&Terminate), Terminate);
        assert!(Sync::from_bytes(&bytes::Bytes::from_static(b"x")).is_err());
    }
}
