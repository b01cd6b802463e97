//! DataRow (B) message: one row of a result set.

use bytes::Bytes;

use super::{FromBytes, Message, Reader, ToBytes, Writer};
use crate::pg::error::ProtocolError;

/// `D` (backend): column values; `None` is SQL NULL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRow {
    pub values: Vec<Option<Bytes>>,
}

impl Message for DataRow {
    const CODE: u8 = b'D';
    const NAME: &'static str = "datarow";
}

impl FromBytes for DataRow {
    fn from_bytes(body: &Bytes) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, Self::NAME);
        let n = r.count16("column count")?;
        if n.saturating_mul(4) > r.remaining() {
            return Err(ProtocolError::Truncated { message: Self::NAME });
        }
        let values =
            (0..n).map(|_| r.value().map(|v| v.map(|v| body.slice_ref(v)))).collect::<Result<_, _>>()?;
        r.finish()?;
        Ok(Self { values })
    }
}

impl ToBytes for DataRow {
    fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        let mut w = Writer::typed(Self::CODE, Self::NAME);
        w.count16(self.values.len())?;
        for v in &self.values {
            w.value(v.as_deref())?;
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
        let d = DataRow { values: vec![Some(Bytes::from_static(b"4111111111111111")), None] };
        assert_eq!(round_trip(&d), d);
        assert!(DataRow::from_bytes(&Bytes::from_static(b"\x00\x01\x00\x00\x00\x05ab")).is_err());
    }
}
