//! RowDescription (B) message: the columns of a result set.

use bytes::Bytes;

use super::{FromBytes, Message, Reader, ToBytes, Writer};
use crate::pg::error::ProtocolError;

/// One column of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: Bytes,
    /// OID of the source table, or 0.
    pub table_oid: u32,
    /// Attribute number in the source table, or 0.
    pub column: i16,
    pub type_oid: u32,
    pub type_size: i16,
    pub type_modifier: i32,
    /// 0 text, 1 binary (always 0 in a Describe of a statement).
    pub format: i16,
}

/// `T`: column descriptions, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowDescription {
    pub fields: Vec<Field>,
}

impl Message for RowDescription {
    const CODE: u8 = b'T';
    const NAME: &'static str = "rowdescription";
}

impl FromBytes for RowDescription {
    fn from_bytes(body: &Bytes) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, Self::NAME);
        let n = r.count16("field count")?;
        // each field takes at least 19 bytes (empty name + 18 bytes of attributes)
        if n.saturating_mul(19) > r.remaining() {
            return Err(ProtocolError::Truncated { message: Self::NAME });
        }
        let mut fields = Vec::with_capacity(n);
        for _ in 0..n {
            fields.push(Field {
                name: body.slice_ref(r.cstr()?),
                table_oid: r.i32()? as u32,
                column: r.i16()?,
                type_oid: r.i32()? as u32,
                type_size: r.i16()?,
                type_modifier: r.i32()?,
                format: r.i16()?,
            });
        }
        r.finish()?;
        Ok(Self { fields })
    }
}

impl ToBytes for RowDescription {
    fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        let mut w = Writer::typed(Self::CODE, Self::NAME);
        w.count16(self.fields.len())?;
        for f in &self.fields {
            w.cstr(&f.name)?
                .i32(f.table_oid as i32)
                .i16(f.column)
                .i32(f.type_oid as i32)
                .i16(f.type_size)
                .i32(f.type_modifier)
                .i16(f.format);
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
        let t = RowDescription {
            fields: vec![Field {
                name: Bytes::from_static(b"account_number"),
                table_oid: 16384,
                column: 2,
                type_oid: 25,
                type_size: -1,
                type_modifier: -1,
                format: 0,
            }],
        };
        assert_eq!(round_trip(&t), t);
        assert!(RowDescription::from_bytes(&Bytes::from_static(b"\x00\x01a\0")).is_err());
    }
}
