//! BackendKeyData (B) message: the process id and secret key used by CancelRequest.

use bytes::Bytes;

use super::{FromBytes, Message, Reader, ToBytes, Writer};
use crate::pg::error::ProtocolError;

/// Longest secret key allowed by protocol 3.2 (3.0 uses exactly 4 bytes).
pub const MAX_SECRET_KEY_LEN: usize = 256;

/// `K`: backend process id and cancellation secret key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendKeyData {
    pub process_id: i32,
    pub secret_key: Bytes,
}

/// Fails unless a secret key has 4 to 256 bytes.
pub(crate) fn check_secret_key(key: &[u8], message: &'static str) -> Result<(), ProtocolError> {
    if (4..=MAX_SECRET_KEY_LEN).contains(&key.len()) {
        Ok(())
    } else {
        Err(ProtocolError::InvalidValue {
            message,
            field: "secret key length",
            value: i64::try_from(key.len()).unwrap_or(i64::MAX),
        })
    }
}

impl Message for BackendKeyData {
    const CODE: u8 = b'K';
    const NAME: &'static str = "backendkeydata";
}

impl FromBytes for BackendKeyData {
    fn from_bytes(body: &Bytes) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, Self::NAME);
        let process_id = r.i32()?;
        let key = r.rest();
        check_secret_key(key, Self::NAME)?;
        Ok(Self { process_id, secret_key: body.slice_ref(key) })
    }
}

impl ToBytes for BackendKeyData {
    fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        check_secret_key(&self.secret_key, Self::NAME)?;
        let mut w = Writer::typed(Self::CODE, Self::NAME);
        w.i32(self.process_id).bytes(&self.secret_key);
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::messages::test_util::round_trip;

    #[test]
    fn round_trips_and_checks_key_length() {
        let k = BackendKeyData { process_id: 4242, secret_key: Bytes::from_static(b"\x01\x02\x03\x04") };
        assert_eq!(round_trip(&k), k);
        assert!(BackendKeyData::from_bytes(&Bytes::from_static(b"\0\0\0\x01\x02")).is_err());
    }
}
