//! Query (F) message: a simple-protocol query string (may hold several statements).

use bytes::Bytes;

use super::{FromBytes, Message, Reader, ToBytes, Writer};
use crate::pg::error::ProtocolError;

/// `Q`: the SQL text, without its NUL terminator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub sql: Bytes,
}

impl Message for Query {
    const CODE: u8 = b'Q';
    const NAME: &'static str = "query";
}

impl FromBytes for Query {
    fn from_bytes(body: &Bytes) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, Self::NAME);
        let sql = body.slice_ref(r.cstr()?);
        r.finish()?;
        Ok(Self { sql })
    }
}

impl ToBytes for Query {
    fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        let mut w = Writer::typed(Self::CODE, Self::NAME);
        w.cstr(&self.sql)?;
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::messages::test_util::round_trip;

    #[test]
    fn round_trips() {
        let q = Query { sql: Bytes::from_static(b"select 1; select 2") };
        assert_eq!(round_trip(&q), q);
    }

    #[test]
    fn rejects_missing_terminator_and_trailing_bytes() {
        assert!(Query::from_bytes(&Bytes::from_static(b"select 1")).is_err());
        assert!(Query::from_bytes(&Bytes::from_static(b"select 1\0x")).is_err());
    }
}
