//! ParameterStatus (B) message: a run-time parameter's current value.

use bytes::Bytes;

use super::{FromBytes, Message, Reader, ToBytes, Writer};
use crate::pg::error::ProtocolError;

/// `S` (backend): parameter name and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterStatus {
    pub name: Bytes,
    pub value: Bytes,
}

impl Message for ParameterStatus {
    const CODE: u8 = b'S';
    const NAME: &'static str = "parameterstatus";
}

impl FromBytes for ParameterStatus {
    fn from_bytes(body: &Bytes) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, Self::NAME);
        let name = body.slice_ref(r.cstr()?);
        let value = body.slice_ref(r.cstr()?);
        r.finish()?;
        Ok(Self { name, value })
    }
}

impl ToBytes for ParameterStatus {
    fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        let mut w = Writer::typed(Self::CODE, Self::NAME);
        w.cstr(&self.name)?.cstr(&self.value)?;
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::messages::test_util::round_trip;

    #[test]
    fn round_trips() {
        let p = ParameterStatus {
            name: Bytes::from_static(b"client_encoding"),
            value: Bytes::from_static(b"UTF8"),
        };
        assert_eq!(round_trip(&p), p);
        assert!(ParameterStatus::from_bytes(&Bytes::from_static(b"a\0b")).is_err());
    }
}
