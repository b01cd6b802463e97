//! NegotiateProtocolVersion (B) message: the newest minor version and unrecognized options.

use bytes::Bytes;

use super::{FromBytes, Message, Reader, ToBytes, Writer};
use crate::pg::error::ProtocolError;

/// `v`: newest minor protocol version supported, and the `_pq_.*` options not recognized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiateProtocolVersion {
    pub newest_minor: i32,
    pub unsupported: Vec<Bytes>,
}

impl Message for NegotiateProtocolVersion {
    const CODE: u8 = b'v';
    const NAME: &'static str = "negotiateprotocolversion";
}

impl FromBytes for NegotiateProtocolVersion {
    fn from_bytes(body: &Bytes) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, Self::NAME);
        let newest_minor = r.i32()?;
        let n = r.i32()?;
        let n = usize::try_from(n).map_err(|_| ProtocolError::InvalidValue {
            message: Self::NAME,
            field: "option count",
            value: i64::from(n),
        })?;
        if n > r.remaining() {
            return Err(ProtocolError::Truncated { message: Self::NAME });
        }
        let unsupported = (0..n).map(|_| r.cstr().map(|s| body.slice_ref(s))).collect::<Result<_, _>>()?;
        r.finish()?;
        Ok(Self { newest_minor, unsupported })
    }
}

impl ToBytes for NegotiateProtocolVersion {
    fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        let n = i32::try_from(self.unsupported.len())
            .map_err(|_| ProtocolError::Encode { message: Self::NAME, reason: "too many items" })?;
        let mut w = Writer::typed(Self::CODE, Self::NAME);
        w.i32(self.newest_minor).i32(n);
        for opt in &self.unsupported {
            w.cstr(opt)?;
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
        let v = NegotiateProtocolVersion {
            newest_minor: 0,
            unsupported: vec![Bytes::from_static(b"_pq_.compression")],
        };
        assert_eq!(round_trip(&v), v);
    }
}
