//! ErrorResponse and NoticeResponse (B) messages: typed fields (`S`, `V`, `C`, `M`, `D`, `H`, ...).

use bytes::Bytes;

use super::{FromBytes, Message, Reader, ToBytes, Writer};
use crate::pg::error::ProtocolError;

/// Localized severity (`ERROR`, `FATAL`, `NOTICE`, ...).
pub const FIELD_SEVERITY: u8 = b'S';
/// Non-localized severity (protocol 3.0 servers since 9.6).
pub const FIELD_SEVERITY_NONLOCALIZED: u8 = b'V';
/// SQLSTATE code.
pub const FIELD_CODE: u8 = b'C';
/// Primary message.
pub const FIELD_MESSAGE: u8 = b'M';
/// Detail.
pub const FIELD_DETAIL: u8 = b'D';
/// Hint.
pub const FIELD_HINT: u8 = b'H';

/// The field list shared by ErrorResponse and NoticeResponse, in wire order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fields {
    pub fields: Vec<(u8, Bytes)>,
}

impl Fields {
    /// The first value of field `code`.
    pub fn get(&self, code: u8) -> Option<&Bytes> {
        self.fields.iter().find(|(c, _)| *c == code).map(|(_, v)| v)
    }

    /// Standard fields: `S` and `V` (same severity), `C`, `M`, then `D` and `H` when given.
    pub fn new(
        severity: &str,
        sqlstate: &str,
        message: &str,
        detail: Option<&str>,
        hint: Option<&str>,
    ) -> Self {
        let owned = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        let mut fields = vec![
            (FIELD_SEVERITY, owned(severity)),
            (FIELD_SEVERITY_NONLOCALIZED, owned(severity)),
            (FIELD_CODE, owned(sqlstate)),
            (FIELD_MESSAGE, owned(message)),
        ];
        fields.extend(detail.map(|d| (FIELD_DETAIL, owned(d))));
        fields.extend(hint.map(|h| (FIELD_HINT, owned(h))));
        Self { fields }
    }

    fn decode(body: &Bytes, message: &'static str) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, message);
        let mut fields = Vec::new();
        loop {
            let code = r.u8()?;
            if code == 0 {
                break;
            }
            fields.push((code, body.slice_ref(r.cstr()?)));
        }
        r.finish()?;
        Ok(Self { fields })
    }

    fn encode(&self, code: u8, message: &'static str) -> Result<Bytes, ProtocolError> {
        let mut w = Writer::typed(code, message);
        for (c, v) in &self.fields {
            if *c == 0 {
                return Err(ProtocolError::Encode { message, reason: "field code 0" });
            }
            w.u8(*c).cstr(v)?;
        }
        w.u8(0);
        w.finish()
    }
}

/// `E` (backend): an error; the command (or session, for FATAL) failed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorResponse(pub Fields);

/// `N`: a notice; informational, may arrive at any time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NoticeResponse(pub Fields);

impl Message for ErrorResponse {
    const CODE: u8 = b'E';
    const NAME: &'static str = "errorresponse";
}

impl Message for NoticeResponse {
    const CODE: u8 = b'N';
    const NAME: &'static str = "noticeresponse";
}

impl FromBytes for ErrorResponse {
    fn from_bytes(body: &Bytes) -> Result<Self, ProtocolError> {
        Fields::decode(body, Self::NAME).map(Self)
    }
}

impl FromBytes for NoticeResponse {
    fn from_bytes(body: &Bytes) -> Result<Self, ProtocolError> {
        Fields::decode(body, Self::NAME).map(Self)
    }
}

impl ToBytes for ErrorResponse {
    fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        self.0.encode(Self::CODE, Self::NAME)
    }
}

impl ToBytes for NoticeResponse {
    fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        self.0.encode(Self::CODE, Self::NAME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::messages::test_util::round_trip;

    #[test]
    fn round_trips_standard_fields() {
        let e = ErrorResponse(Fields::new("ERROR", "42501", "denied by rule agents", None, Some("ask")));
        let back = round_trip(&e);
        assert_eq!(back, e);
        assert_eq!(back.0.get(FIELD_CODE).unwrap(), "42501");
        assert_eq!(back.0.get(FIELD_SEVERITY_NONLOCALIZED).unwrap(), "ERROR");
        assert!(back.0.get(FIELD_DETAIL).is_none());
        let n = NoticeResponse(Fields::new("NOTICE", "00000", "held", None, None));
        assert_eq!(round_trip(&n), n);
    }

    #[test]
    fn rejects_missing_terminators() {
        assert!(ErrorResponse::from_bytes(&Bytes::from_static(b"SERROR\0")).is_err());
        assert!(ErrorResponse::from_bytes(&Bytes::from_static(b"SERROR")).is_err());
        assert!(ErrorResponse::from_bytes(&Bytes::from_static(b"\0x")).is_err());
        assert_eq!(ErrorResponse::from_bytes(&Bytes::from_static(b"\0")).unwrap(), ErrorResponse::default());
    }
}
