//! Close (F) message: release a prepared statement or portal.

use bytes::Bytes;

use super::describe::Target;
use super::{FromBytes, Message, Reader, ToBytes, Writer};
use crate::pg::error::ProtocolError;

/// `C` (frontend): close the statement or portal `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub target: Target,
    pub name: Bytes,
}

impl Message for Close {
    const CODE: u8 = b'C';
    const NAME: &'static str = "close";
}

impl FromBytes for Close {
    fn from_bytes(body: &Bytes) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, Self::NAME);
        let target = Target::decode(&mut r, Self::NAME)?;
        let name = body.slice_ref(r.cstr()?);
        r.finish()?;
        Ok(Self { target, name })
    }
}

impl ToBytes for Close {
    fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        let mut w = Writer::typed(Self::CODE, Self::NAME);
        w.u8(self.target.code()).cstr(&self.name)?;
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::messages::test_util::round_trip;

    #[test]
    fn round_trips() {
        let c = Close { target: Target::Statement, name: Bytes::from_static(b"s1") };
        assert_eq!(round_trip(&c), c);
    }
}
