//! FunctionCall (F) and FunctionCallResponse (B) messages: the legacy fast-path interface.

use bytes::Bytes;

use super::{FromBytes, Message, Reader, ToBytes, Writer};
use crate::pg::error::ProtocolError;

/// `F`: call the function `oid` with arguments (formats follow the Bind 0 / 1 / n convention).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionCall {
    pub oid: u32,
    pub arg_formats: Vec<i16>,
    pub args: Vec<Option<Bytes>>,
    pub result_format: i16,
}

impl Message for FunctionCall {
    const CODE: u8 = b'F';
    const NAME: &'static str = "functioncall";
}

impl FromBytes for FunctionCall {
    fn from_bytes(body: &Bytes) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, Self::NAME);
        let oid = r.i32()? as u32;
        let nf = r.count16("format count")?;
        if nf.saturating_mul(2) > r.remaining() {
            return Err(ProtocolError::Truncated { message: Self::NAME });
        }
        let arg_formats = (0..nf).map(|_| r.i16()).collect::<Result<_, _>>()?;
        let na = r.count16("argument count")?;
        if na.saturating_mul(4) > r.remaining() {
            return Err(ProtocolError::Truncated { message: Self::NAME });
        }
        let args =
            (0..na).map(|_| r.value().map(|v| v.map(|v| body.slice_ref(v)))).collect::<Result<_, _>>()?;
        let result_format = r.i16()?;
        r.finish()?;
        Ok(Self { oid, arg_formats, args, result_format })
    }
}

impl ToBytes for FunctionCall {
    fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        let mut w = Writer::typed(Self::CODE, Self::NAME);
        w.i32(self.oid as i32).count16(self.arg_formats.len())?;
        for f in &self.arg_formats {
            w.i16(*f);
        }
        w.count16(self.args.len())?;
        for a in &self.args {
            w.value(a.as_deref())?;
        }
        w.i16(self.result_format);
        w.finish()
    }
}

/// `V`: the function result (`None` is SQL NULL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionCallResponse {
    pub result: Option<Bytes>,
}

impl Message for FunctionCallResponse {
    const CODE: u8 = b'V';
    const NAME: &'static str = "functioncallresponse";
}

impl FromBytes for FunctionCallResponse {
    fn from_bytes(body: &Bytes) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, Self::NAME);
        let result = r.value()?.map(|v| body.slice_ref(v));
        r.finish()?;
        Ok(Self { result })
    }
}

impl ToBytes for FunctionCallResponse {
    fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        let mut w = Writer::typed(Self::CODE, Self::NAME);
        w.value(self.result.as_deref())?;
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::messages::test_util::round_trip;

    #[test]
    fn round_trips() {
        let f = FunctionCall {
            oid: 1598,
            arg_formats: vec![0],
            args: vec![Some(Bytes::from_static(b"7")), None],
            result_format: 0,
        };
        assert_eq!(round_trip(&f), f);
        let v = FunctionCallResponse { result: Some(Bytes::from_static(b"0.5")) };
        assert_eq!(round_trip(&v), v);
    }
}
