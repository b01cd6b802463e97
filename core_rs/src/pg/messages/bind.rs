//! Bind (F) message: bind parameters to a prepared statement, creating a portal.

use bytes::Bytes;

use super::{FromBytes, Message, Reader, ToBytes, Writer};
use crate::pg::error::ProtocolError;

/// Format code of a parameter or result column.
pub const FORMAT_TEXT: i16 = 0;
/// Binary format code.
pub const FORMAT_BINARY: i16 = 1;

/// `B`: portal and statement names, parameter format codes and values, result format codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub portal: Bytes,
    pub statement: Bytes,
    /// 0 entries = all text, 1 = applies to every parameter, n = one per parameter.
    pub param_formats: Vec<i16>,
    /// Parameter values; `None` is SQL NULL.
    pub params: Vec<Option<Bytes>>,
    /// Same convention as `param_formats`, for the result columns.
    pub result_formats: Vec<i16>,
}

impl Bind {
    /// The format code of parameter `index` per the 0 / 1 / n convention (text when absent).
    pub fn param_format(&self, index: usize) -> i16 {
        format_of(&self.param_formats, index)
    }
}

/// The format code of item `index` under the 0 / 1 / n format-code convention.
pub fn format_of(formats: &[i16], index: usize) -> i16 {
    match formats {
        [] => FORMAT_TEXT,
        [one] => *one,
        many => many.get(index).copied().unwrap_or(FORMAT_TEXT),
    }
}

fn formats(r: &mut Reader<'_>) -> Result<Vec<i16>, ProtocolError> {
    let n = r.count16("format count")?;
    if n.saturating_mul(2) > r.remaining() {
        return Err(ProtocolError::Truncated { message: Bind::NAME });
    }
    (0..n).map(|_| r.i16()).collect()
}

impl Message for Bind {
    const CODE: u8 = b'B';
    const NAME: &'static str = "bind";
}

impl FromBytes for Bind {
    fn from_bytes(body: &Bytes) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, Self::NAME);
        let portal = body.slice_ref(r.cstr()?);
        let statement = body.slice_ref(r.cstr()?);
        let param_formats = formats(&mut r)?;
        let n = r.count16("parameter count")?;
        if n.saturating_mul(4) > r.remaining() {
            return Err(ProtocolError::Truncated { message: Self::NAME });
        }
        let params =
            (0..n).map(|_| r.value().map(|v| v.map(|v| body.slice_ref(v)))).collect::<Result<_, _>>()?;
        let result_formats = formats(&mut r)?;
        r.finish()?;
        Ok(Self { portal, statement, param_formats, params, result_formats })
    }
}

impl ToBytes for Bind {
    fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        let mut w = Writer::typed(Self::CODE, Self::NAME);
        w.cstr(&self.portal)?.cstr(&self.statement)?;
        w.count16(self.param_formats.len())?;
        for f in &self.param_formats {
            w.i16(*f);
        }
        w.count16(self.params.len())?;
        for p in &self.params {
            w.value(p.as_deref())?;
        }
        w.count16(self.result_formats.len())?;
        for f in &self.result_formats {
            w.i16(*f);
        }
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::messages::test_util::round_trip;

    #[test]
    fn round_trips_with_null_and_binary() {
        let b = Bind {
            portal: Bytes::from_static(b"p"),
            statement: Bytes::from_static(b"s"),
            param_formats: vec![0, 1, 0],
            params: vec![Some(Bytes::from_static(b"42")), Some(Bytes::from_static(b"\x00\x01")), None],
            result_formats: vec![1],
        };
        assert_eq!(round_trip(&b), b);
        assert_eq!(b.param_format(1), FORMAT_BINARY);
        assert_eq!(format_of(&[], 5), FORMAT_TEXT);
        assert_eq!(format_of(&[1], 5), FORMAT_BINARY);
    }

    #[test]
    fn rejects_bad_value_length() {
        // one parameter whose length is -2
        let body = Bytes::from_static(b"\0\0\0\0\0\x01\xff\xff\xff\xfe\0\0");
        assert!(Bind::from_bytes(&body).is_err());
    }
}
