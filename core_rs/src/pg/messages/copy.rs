//! Copy (F/B) messages: CopyData, CopyDone, CopyFail and the Copy{In,Out,Both}Response family.

use bytes::Bytes;

use super::{empty_message, FromBytes, Message, Reader, ToBytes, Writer};
use crate::pg::error::ProtocolError;

/// `d` (both directions): a chunk of COPY data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyData {
    pub data: Bytes,
}

impl Message for CopyData {
    const CODE: u8 = b'd';
    const NAME: &'static str = "copydata";
}

impl FromBytes for CopyData {
    fn from_bytes(body: &Bytes) -> Result<Self, ProtocolError> {
        Ok(Self { data: body.clone() })
    }
}

impl ToBytes for CopyData {
    fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        let mut w = Writer::typed(Self::CODE, Self::NAME);
        w.bytes(&self.data);
        w.finish()
    }
}

empty_message!(
    /// `c` (both directions): end of the COPY data stream.
    CopyDone, b'c', "copydone"
);

/// `f` (frontend): abort a COPY FROM STDIN with a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFail {
    pub message: Bytes,
}

impl Message for CopyFail {
    const CODE: u8 = b'f';
    const NAME: &'static str = "copyfail";
}

impl FromBytes for CopyFail {
    fn from_bytes(body: &Bytes) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, Self::NAME);
        let message = body.slice_ref(r.cstr()?);
        r.finish()?;
        Ok(Self { message })
    }
}

impl ToBytes for CopyFail {
    fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        let mut w = Writer::typed(Self::CODE, Self::NAME);
        w.cstr(&self.message)?;
        w.finish()
    }
}

/// Direction of a COPY announced by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyDirection {
    /// `G`: CopyInResponse, the client streams data to the server.
    In,
    /// `H`: CopyOutResponse, the server streams data to the client.
    Out,
    /// `W`: CopyBothResponse (streaming replication), both stream.
    Both,
}

impl CopyDirection {
    /// The direction announced by a backend type byte, if it is a copy response.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            b'G' => Some(Self::In),
            b'H' => Some(Self::Out),
            b'W' => Some(Self::Both),
            _ => None,
        }
    }

    fn code(self) -> u8 {
        match self {
            Self::In => b'G',
            Self::Out => b'H',
            Self::Both => b'W',
        }
    }
}

/// `G` / `H` / `W`: overall format (0 text, 1 binary) and per-column format codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyResponse {
    pub direction: CopyDirection,
    pub format: i8,
    pub column_formats: Vec<i16>,
}

impl CopyResponse {
    const NAME: &'static str = "copyresponse";

    /// Decodes the body of a `G`, `H` or `W` message.
    pub fn decode(direction: CopyDirection, body: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, Self::NAME);
        let format = r.u8()? as i8;
        let n = r.count16("column count")?;
        if n.saturating_mul(2) > r.remaining() {
            return Err(ProtocolError::Truncated { message: Self::NAME });
        }
        let column_formats = (0..n).map(|_| r.i16()).collect::<Result<_, _>>()?;
        r.finish()?;
        Ok(Self { direction, format, column_formats })
    }
}

impl ToBytes for CopyResponse {
    fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        let mut w = Writer::typed(self.direction.code(), Self::NAME);
        w.u8(self.format as u8).count16(self.column_formats.len())?;
        for f in &self.column_formats {
            w.i16(*f);
        }
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::messages::test_util::{round_trip, split};

    #[test]
    fn round_trips() {
        let d = CopyData { data: Bytes::from_static(b"1\tx\n") };
        assert_eq!(round_trip(&d), d);
        assert_eq!(round_trip(&CopyDone), CopyDone);
        let f = CopyFail { message: Bytes::from_static(b"client gave up") };
        assert_eq!(round_trip(&f), f);
        let g = CopyResponse { direction: CopyDirection::In, format: 0, column_formats: vec![0, 0] };
        let (code, body) = split(&g.to_bytes().unwrap());
        let dir = CopyDirection::from_code(code).unwrap();
        assert_eq!(CopyResponse::decode(dir, &body).unwrap(), g);
        assert!(CopyResponse::decode(dir, b"\0\0\x02\0\0").is_err());
    }
}
