//! PostgreSQL v3 messages, one module per message family.
//!
//! Decoders implement [`FromBytes`] over a message *body* (the bytes after the length word) and keep
//! zero-copy [`Bytes`] slices of it; encoders implement [`ToBytes`] and produce a whole message. All
//! reads are checked: a short or malformed body is a [`ProtocolError`], never a panic.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::ProtocolError;

pub mod authentication;
pub mod backend_key_data;
pub mod bind;
pub mod close;
pub mod command_complete;
pub mod complete;
pub mod copy;
pub mod data_row;
pub mod describe;
pub mod empty_query_response;
pub mod error_notice;
pub mod execute;
pub mod function_call;
pub mod negotiate_protocol_version;
pub mod no_data;
pub mod notification;
pub mod parameter_description;
pub mod parameter_status;
pub mod parse;
pub mod password;
pub mod portal_suspended;
pub mod query;
pub mod ready_for_query;
pub mod row_description;
pub mod startup;
pub mod sync_flush_terminate;

/// A typed message: its type byte and a name for error messages.
pub trait Message {
    /// The type byte on the wire.
    const CODE: u8;
    /// Lowercase name used in error messages.
    const NAME: &'static str;
}

/// Decode a message from its body (the bytes after the length word).
pub trait FromBytes: Sized {
    /// Decodes `body`, keeping zero-copy slices of it where useful.
    fn from_bytes(body: &Bytes) -> Result<Self, ProtocolError>;
}

/// Encode a whole message (type byte, length word, body).
pub trait ToBytes {
    /// Encodes the message; fails on values the wire cannot carry (interior NUL, oversized field).
    fn to_bytes(&self) -> Result<Bytes, ProtocolError>;
}

/// Checked reader over a message body.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    message: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], message: &'static str) -> Self {
        Self { buf, message }
    }

    fn truncated(&self) -> ProtocolError {
        ProtocolError::Truncated { message: self.message }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if n > self.buf.len() {
            return Err(self.truncated());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        let head = self.bytes(N)?;
        <[u8; N]>::try_from(head).map_err(|_| ProtocolError::Truncated { message: self.message })
    }

    pub(crate) fn u8(&mut self) -> Result<u8, ProtocolError> {
        let [b] = self.array::<1>()?;
        Ok(b)
    }

    pub(crate) fn i16(&mut self) -> Result<i16, ProtocolError> {
        self.array().map(i16::from_be_bytes)
    }

    pub(crate) fn i32(&mut self) -> Result<i32, ProtocolError> {
        self.array().map(i32::from_be_bytes)
    }

    /// A count (int16 on the wire) that must not be negative.
    pub(crate) fn count16(&mut self, field: &'static str) -> Result<usize, ProtocolError> {
        let n = self.i16()?;
        usize::try_from(n).map_err(|_| ProtocolError::InvalidValue {
            message: self.message,
            field,
            value: i64::from(n),
        })
    }

    /// A NUL-terminated string, without its terminator.
    pub(crate) fn cstr(&mut self) -> Result<&'a [u8], ProtocolError> {
        let Some(nul) = memchr::memchr(0, self.buf) else {
            return Err(ProtocolError::MissingTerminator { message: self.message });
        };
        let s = self.bytes(nul)?;
        self.bytes(1)?;
        Ok(s)
    }

    /// A length-prefixed (int32) value; -1 is SQL NULL.
    pub(crate) fn value(&mut self) -> Result<Option<&'a [u8]>, ProtocolError> {
        let len = self.i32()?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| ProtocolError::InvalidValue {
            message: self.message,
            field: "value length",
            value: i64::from(len),
        })?;
        self.bytes(len).map(Some)
    }

    /// Everything left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Fails unless the whole body was consumed.
    pub(crate) fn finish(&self) -> Result<(), ProtocolError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::TrailingBytes { message: self.message, count: self.buf.len() })
        }
    }
}

/// UTF-8 text of a field, or a typed error naming the message and field.
pub(crate) fn utf8<'a>(
    bytes: &'a [u8],
    message: &'static str,
    field: &'static str,
) -> Result<&'a str, ProtocolError> {
    std::str::from_utf8(bytes).map_err(|_| ProtocolError::InvalidUtf8 { message, field })
}

/// Builder of one message; the length word is patched in by [`Writer::finish`].
pub(crate) struct Writer {
    buf: BytesMut,
    start: usize,
    message: &'static str,
}

impl Writer {
    /// A typed message (type byte + length + body).
    pub(crate) fn typed(code: u8, message: &'static str) -> Self {
        let mut buf = BytesMut::with_capacity(64);
        buf.put_u8(code);
        buf.put_i32(0);
        Self { buf, start: 1, message }
    }

    /// An untyped startup-phase packet (length + body).
    pub(crate) fn untyped(message: &'static str) -> Self {
        let mut buf = BytesMut::with_capacity(64);
        buf.put_i32(0);
        Self { buf, start: 0, message }
    }

    fn error(&self, reason: &'static str) -> ProtocolError {
        ProtocolError::Encode { message: self.message, reason }
    }

    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.put_u8(v);
        self
    }

    pub(crate) fn i16(&mut self, v: i16) -> &mut Self {
        self.buf.put_i16(v);
        self
    }

    pub(crate) fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.put_i32(v);
        self
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.put_slice(v);
        self
    }

    /// A count written as int16.
    pub(crate) fn count16(&mut self, n: usize) -> Result<&mut Self, ProtocolError> {
        let n = i16::try_from(n).map_err(|_| self.error("too many items"))?;
        Ok(self.i16(n))
    }

    /// A NUL-terminated string; fails on an interior NUL.
    pub(crate) fn cstr(&mut self, v: &[u8]) -> Result<&mut Self, ProtocolError> {
        if memchr::memchr(0, v).is_some() {
            return Err(self.error("string contains a nul byte"));
        }
        self.buf.put_slice(v);
        self.buf.put_u8(0);
        Ok(self)
    }

    /// A length-prefixed value; `None` is SQL NULL (-1).
    pub(crate) fn value(&mut self, v: Option<&[u8]>) -> Result<&mut Self, ProtocolError> {
        match v {
            None => Ok(self.i32(-1)),
            Some(v) => {
                let len = i32::try_from(v.len()).map_err(|_| self.error("value too large"))?;
                Ok(self.i32(len).bytes(v))
            }
        }
    }

    /// Patches the length word and returns the message.
    pub(crate) fn finish(mut self) -> Result<Bytes, ProtocolError> {
        let len = self.buf.len().saturating_sub(self.start);
        let len = i32::try_from(len).map_err(|_| self.error("message too large"))?;
        let word = self
            .buf
            .get_mut(self.start..self.start + 4)
            .ok_or(ProtocolError::Encode { message: self.message, reason: "internal" })?;
        word.copy_from_slice(&len.to_be_bytes());
        Ok(self.buf.freeze())
    }
}

/// Declares a message without a body: a unit struct with [`Message`], [`FromBytes`] and [`ToBytes`].
macro_rules! empty_message {
    ($(#[$doc:meta])* $name:ident, $code:expr, $label:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $name;

        impl $crate::pg::messages::Message for $name {
            const CODE: u8 = $code;
            const NAME: &'static str = $label;
        }

        impl $crate::pg::messages::FromBytes for $name {
            fn from_bytes(body: &bytes::Bytes) -> Result<Self, $crate::pg::error::ProtocolError> {
                $crate::pg::messages::Reader::new(body, $label).finish()?;
                Ok(Self)
            }
        }

        impl $crate::pg::messages::ToBytes for $name {
            fn to_bytes(&self) -> Result<bytes::Bytes, $crate::pg::error::ProtocolError> {
                $crate::pg::messages::Writer::typed($code, $label).finish()
            }
        }
    };
}
pub(crate) use empty_message;

#[cfg(test)]
pub(crate) mod test_util {
    //! Helpers shared by the codec tests.
    use super::*;

    /// Splits an encoded typed message into (code, body), checking its length word.
    #[allow(clippy::indexing_slicing, clippy::unwrap_used)]
    pub(crate) fn split(msg: &Bytes) -> (u8, Bytes) {
        let len = i32::from_be_bytes(msg[1..5].try_into().unwrap()) as usize;
        assert_eq!(len + 1, msg.len(), "length word");
        (msg[0], msg.slice(5..))
    }

    /// Encodes then decodes, asserting the type byte.
    #[allow(clippy::unwrap_used)]
    pub(crate) fn round_trip<M: Message + FromBytes + ToBytes>(m: &M) -> M {
        let (code, body) = split(&m.to_bytes().unwrap());
        assert_eq!(code, M::CODE);
        M::from_bytes(&body).unwrap()
    }
}
