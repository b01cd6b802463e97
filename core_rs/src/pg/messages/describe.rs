//! Describe (F) message: ask for the shape of a prepared statement or portal.

use bytes::Bytes;

use super::{FromBytes, Message, Reader, ToBytes, Writer};
use crate::pg::error::ProtocolError;

/// What a Describe or Close message refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `S`: a prepared statement.
    Statement,
    /// `P`: a portal.
    Portal,
}

impl Target {
    pub(crate) fn decode(r: &mut Reader<'_>, message: &'static str) -> Result<Self, ProtocolError> {
        match r.u8()? {
            b'S' => Ok(Self::Statement),
            b'P' => Ok(Self::Portal),
            other => Err(ProtocolError::InvalidValue { message, field: "target", value: i64::from(other) }),
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            Self::Statement => b'S',
            Self::Portal => b'P',
        }
    }
}

/// `D` (frontend): describe the statement or portal `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Describe {
    pub target: Target,
    pub name: Bytes,
}

impl Message for Describe {
    const CODE: u8 = b'D';
    const NAME: &'static str = "describe";
}

impl FromBytes for Describe {
    fn from_bytes(body: &Bytes) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, Self::NAME);
        let target = Target::decode(&mut r, Self::NAME)?;
        let name = body.slice_ref(r.cstr()?);
        r.finish()?;
        Ok(Self { target, name })
    }
}

impl ToBytes for Describe {
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
        let d = Describe { target: Target::Portal, name: Bytes::from_static(b"p1") };
        assert_eq!(round_trip(&d), d);
        assert!(Describe::from_bytes(&Bytes::from_static(b"Xp1\0")).is_err());
    }
}
