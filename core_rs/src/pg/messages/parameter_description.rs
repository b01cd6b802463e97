//! ParameterDescription (B) message: parameter types of a described statement.

use bytes::Bytes;

use super::{FromBytes, Message, Reader, ToBytes, Writer};
use crate::pg::error::ProtocolError;

/// `t`: parameter type OIDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterDescription {
    pub types: Vec<u32>,
}

impl Message for ParameterDescription {
    const CODE: u8 = b't';
    const NAME: &'static str = "parameterdescription";
}

impl FromBytes for ParameterDescription {
    fn from_bytes(body: &Bytes) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, Self::NAME);
        // protocol 3.2 allows up to 65535 parameters: read the count unsigned
        let n = usize::from(r.i16()? as u16);
        if n.saturating_mul(4) > r.remaining() {
            return Err(ProtocolError::Truncated { message: Self::NAME });
        }
        let types = (0..n).map(|_| r.i32().map(|t| t as u32)).collect::<Result<_, _>>()?;
        r.finish()?;
        Ok(Self { types })
    }
}

impl ToBytes for ParameterDescription {
    fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        let n = u16::try_from(self.types.len())
            .map_err(|_| ProtocolError::Encode { message: Self::NAME, reason: "too many items" })?;
        let mut w = Writer::typed(Self::CODE, Self::NAME);
        w.i16(n as i16);
        for t in &self.types {
            w.i32(*t as i32);
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
        let t = ParameterDescription { types: vec![23, 25] };
        assert_eq!(round_trip(&t), t);
    }
}
