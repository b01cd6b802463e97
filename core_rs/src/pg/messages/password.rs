//! PasswordMessage (F) family: cleartext/md5 passwords and SASL responses, all type `p`.

use bytes::Bytes;

use super::{FromBytes, Message, Reader, ToBytes, Writer};
use crate::pg::error::ProtocolError;

/// `p` with raw data: a SASLResponse, or a password when the data ends with NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Password {
    pub data: Bytes,
}

impl Password {
    /// The cleartext (or md5) password: the body up to its single NUL terminator.
    pub fn cleartext(body: &Bytes) -> Result<Bytes, ProtocolError> {
        let mut r = Reader::new(body, Self::NAME);
        let pw = body.slice_ref(r.cstr()?);
        r.finish()?;
        Ok(pw)
    }
}

impl Message for Password {
    const CODE: u8 = b'p';
    const NAME: &'static str = "password";
}

impl FromBytes for Password {
    fn from_bytes(body: &Bytes) -> Result<Self, ProtocolError> {
        Ok(Self { data: body.clone() })
    }
}

impl ToBytes for Password {
    fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        let mut w = Writer::typed(Self::CODE, Self::NAME);
        w.bytes(&self.data);
        w.finish()
    }
}

/// `p` as SASLInitialResponse: the chosen mechanism and the client-first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslInitialResponse {
    pub mechanism: Bytes,
    pub data: Bytes,
}

impl Message for SaslInitialResponse {
    const CODE: u8 = b'p';
    const NAME: &'static str = "saslinitialresponse";
}

impl FromBytes for SaslInitialResponse {
    fn from_bytes(body: &Bytes) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, Self::NAME);
        let mechanism = body.slice_ref(r.cstr()?);
        let data = r.value()?.map(|v| body.slice_ref(v)).unwrap_or_default();
        r.finish()?;
        Ok(Self { mechanism, data })
    }
}

impl ToBytes for SaslInitialResponse {
    fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        let mut w = Writer::typed(Self::CODE, Self::NAME);
        w.cstr(&self.mechanism)?.value(Some(&self.data))?;
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::messages::test_util::{round_trip, split};

    #[test]
    fn cleartext_strips_terminator() {
        assert_eq!(Password::cleartext(&Bytes::from_static(b"secret\0")).unwrap(), "secret");
        assert!(Password::cleartext(&Bytes::from_static(b"secret")).is_err());
        assert!(Password::cleartext(&Bytes::from_static(b"se\0cret\0")).is_err());
        let p = Password { data: Bytes::from_static(b"n,,n=u,r=abc") };
        assert_eq!(round_trip(&p), p);
    }

    #[test]
    fn sasl_initial_response_round_trips() {
        let s = SaslInitialResponse {
            mechanism: Bytes::from_static(b"SCRAM-SHA-256"),
            data: Bytes::from_static(b"n,,n=,r=xyz"),
        };
        let (_, body) = split(&s.to_bytes().unwrap());
        assert_eq!(SaslInitialResponse::from_bytes(&body).unwrap(), s);
    }
}
