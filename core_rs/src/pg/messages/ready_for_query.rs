//! ReadyForQuery (B) message: the server is idle, with its transaction status.

use bytes::Bytes;

use super::{FromBytes, Message, Reader, ToBytes, Writer};
use crate::pg::error::ProtocolError;

/// `Z`: transaction status `I` (idle), `T` (in a transaction) or `E` (in a failed transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadyForQuery {
    pub status: u8,
}

impl ReadyForQuery {
    /// Fails unless `status` is `I`, `T` or `E`.
    pub fn new(status: u8) -> Result<Self, ProtocolError> {
        match status {
            b'I' | b'T' | b'E' => Ok(Self { status }),
            other => Err(ProtocolError::InvalidValue {
                message: Self::NAME,
                field: "transaction status",
                value: i64::from(other),
            }),
        }
    }
}

impl Message for ReadyForQuery {
    const CODE: u8 = b'Z';
    const NAME: &'static str = "readyforquery";
}

impl FromBytes for ReadyForQuery {
    fn from_bytes(body: &Bytes) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, Self::NAME);
        let status = r.u8()?;
        r.finish()?;
        Self::new(status)
    }
}

impl ToBytes for ReadyForQuery {
    fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        let mut w = Writer::typed(Self::CODE, Self::NAME);
        w.u8(self.status);
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::messages::test_util::round_trip;

    #[test]
    fn round_trips_and_checks_status() {
        let z = ReadyForQuery::new(b'T').unwrap();
        assert_eq!(round_trip(&z), z);
        assert!(ReadyForQuery::from_bytes(&Bytes::from_static(b"X")).is_err());
        assert!(ReadyForQuery::from_bytes(&Bytes::from_static(b"II")).is_err());
    }
}
