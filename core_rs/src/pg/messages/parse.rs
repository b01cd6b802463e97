//! Parse (F) message: create a prepared statement.

use bytes::Bytes;

use super::{FromBytes, Message, Reader, ToBytes, Writer};
use crate::pg::error::ProtocolError;

/// `P`: statement name ("" = unnamed), SQL text and parameter type OIDs (0 = unspecified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse {
    pub name: Bytes,
    pub sql: Bytes,
    pub param_types: Vec<u32>,
}

impl Message for Parse {
    const CODE: u8 = b'P';
    const NAME: &'static str = "parse";
}

impl FromBytes for Parse {
    fn from_bytes(body: &Bytes) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, Self::NAME);
        let name = body.slice_ref(r.cstr()?);
        let sql = body.slice_ref(r.cstr()?);
        let n = r.count16("parameter type count")?;
        if n.saturating_mul(4) > r.remaining() {
            return Err(ProtocolError::Truncated { message: Self::NAME });
        }
        let param_types = (0..n).map(|_| r.i32().map(|oid| oid as u32)).collect::<Result<_, _>>()?;
        r.finish()?;
        Ok(Self { name, sql, param_types })
    }
}

impl ToBytes for Parse {
    fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        let mut w = Writer::typed(Self::CODE, Self::NAME);
        w.cstr(&self.name)?.cstr(&self.sql)?.count16(self.param_types.len())?;
        for oid in &self.param_types {
            w.i32(*oid as i32);
        }
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::messages::test_util::round_trip;

    #[test]
    fn round_trips() {
        let p = Parse {
            name: Bytes::from_static(b"s1"),
            sql: Bytes::from_static(b"select $1::int"),
            param_types: vec![23, 0],
        };
        assert_eq!(round_trip(&p), p);
    }

    #[test]
    fn rejects_short_type_list() {
        assert!(Parse::from_bytes(&Bytes::from_static(b"\0select\0\x00\x02\0\0\0\x17")).is_err());
        assert!(Parse::from_bytes(&Bytes::from_static(b"\0select\0\xff\xff")).is_err());
    }
}
