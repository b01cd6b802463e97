//! Execute (F) message: run a portal.

use bytes::Bytes;

use super::{FromBytes, Message, Reader, ToBytes, Writer};
use crate::pg::error::ProtocolError;

/// `E`: portal name and row limit (0 = no limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execute {
    pub portal: Bytes,
    pub max_rows: i32,
}

impl Message for Execute {
    const CODE: u8 = b'E';
    const NAME: &'static str = "execute";
}

impl FromBytes for Execute {
    fn from_bytes(body: &Bytes) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, Self::NAME);
        let portal = body.slice_ref(r.cstr()?);
        let max_rows = r.i32()?;
        r.finish()?;
        Ok(Self { portal, max_rows })
    }
}

impl ToBytes for Execute {
    fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        let mut w = Writer::typed(Self::CODE, Self::NAME);
        w.cstr(&self.portal)?.i32(self.max_rows);
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::messages::test_util::round_trip;

    #[test]
    fn round_trips() {
        let e = Execute { portal: Bytes::from_static(b"c1"), max_rows: 100 };
        assert_eq!(round_trip(&e), e);
        assert!(Execute::from_bytes(&Bytes::from_static(b"\0\0\0")).is_err());
    }
}
