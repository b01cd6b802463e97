//! Authentication (B) message family: `R` with a 32-bit code and code-specific data.

use bytes::Bytes;

use super::{FromBytes, Message, Reader, ToBytes, Writer};
use crate::pg::error::ProtocolError;

/// AuthenticationOk.
pub const AUTH_OK: i32 = 0;
/// AuthenticationCleartextPassword.
pub const AUTH_CLEARTEXT_PASSWORD: i32 = 3;
/// AuthenticationMD5Password (data: 4-byte salt).
pub const AUTH_MD5_PASSWORD: i32 = 5;
/// AuthenticationSASL (data: mechanism names, each NUL-terminated, then a NUL).
pub const AUTH_SASL: i32 = 10;
/// AuthenticationSASLContinue (data: server-first message).
pub const AUTH_SASL_CONTINUE: i32 = 11;
/// AuthenticationSASLFinal (data: server-final message).
pub const AUTH_SASL_FINAL: i32 = 12;

/// `R`: an authentication request or result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    pub code: i32,
    pub data: Bytes,
}

impl Message for Authentication {
    const CODE: u8 = b'R';
    const NAME: &'static str = "authentication";
}

impl FromBytes for Authentication {
    fn from_bytes(body: &Bytes) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, Self::NAME);
        let code = r.i32()?;
        let data = body.slice_ref(r.rest());
        Ok(Self { code, data })
    }
}

impl ToBytes for Authentication {
    fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        let mut w = Writer::typed(Self::CODE, Self::NAME);
        w.i32(self.code).bytes(&self.data);
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::messages::test_util::round_trip;

    #[test]
    fn round_trips() {
        let a = Authentication { code: AUTH_SASL, data: Bytes::from_static(b"SCRAM-SHA-256\0\0") };
        assert_eq!(round_trip(&a), a);
        assert!(Authentication::from_bytes(&Bytes::from_static(b"\0\0")).is_err());
    }
}
