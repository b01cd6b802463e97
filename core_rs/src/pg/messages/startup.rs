//! Startup-phase packets (F): StartupMessage, SSLRequest, GSSENCRequest and CancelRequest.
//!
//! These are untyped: a length word (including itself), then a 32-bit protocol version or request
//! code. Only protocol 3.x is accepted.

use bytes::Bytes;

use super::backend_key_data::check_secret_key;
use super::{utf8, Reader, ToBytes, Writer};
use crate::pg::error::ProtocolError;

/// SSLRequest code (1234.5679).
pub const SSL_REQUEST_CODE: i32 = 80_877_103;
/// GSSENCRequest code (1234.5680).
pub const GSSENC_REQUEST_CODE: i32 = 80_877_104;
/// CancelRequest code (1234.5678).
pub const CANCEL_REQUEST_CODE: i32 = 80_877_102;
/// The only protocol major version spoken.
pub const PROTOCOL_MAJOR: u16 = 3;
/// Smallest startup packet: length word and code.
pub const MIN_STARTUP_LEN: usize = 8;
/// Default guard for startup packets (PostgreSQL itself allows 10000 bytes).
pub const DEFAULT_MAX_STARTUP_SIZE: usize = 10_000;

const NAME: &str = "startup packet";

/// A StartupMessage: protocol version and parameters in wire order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupMessage {
    pub major: u16,
    pub minor: u16,
    pub params: Vec<(String, String)>,
}

/// One decoded startup-phase packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    SslRequest,
    GssEncRequest,
    CancelRequest { process_id: i32, secret_key: Bytes },
    Startup(StartupMessage),
}

fn length_error(len: i64) -> ProtocolError {
    ProtocolError::InvalidValue { message: NAME, field: "length", value: len }
}

/// Decodes one startup packet from the front of `data`.
///
/// Returns `Ok(None)` when more bytes are needed, else the bytes consumed and the packet.
pub fn decode_startup(data: &[u8], max_size: usize) -> Result<Option<(usize, StartupPacket)>, ProtocolError> {
    let Some(word) = data.get(..4) else { return Ok(None) };
    let mut r = Reader::new(word, NAME);
    let len = r.i32()?;
    let len_usize = usize::try_from(len).map_err(|_| length_error(i64::from(len)))?;
    if len_usize < MIN_STARTUP_LEN {
        return Err(length_error(i64::from(len)));
    }
    if len_usize > max_size {
        return Err(ProtocolError::TooLarge { length: i64::from(len), limit: max_size });
    }
    let Some(packet) = data.get(4..len_usize) else { return Ok(None) };
    decode_body(packet).map(|p| Some((len_usize, p)))
}

/// Decodes a packet after its length word.
fn decode_body(packet: &[u8]) -> Result<StartupPacket, ProtocolError> {
    let mut r = Reader::new(packet, NAME);
    let code = r.i32()?;
    match code {
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => {
            r.finish()?;
            Ok(if code == SSL_REQUEST_CODE {
                StartupPacket::SslRequest
            } else {
                StartupPacket::GssEncRequest
            })
        }
        CANCEL_REQUEST_CODE => {
            let process_id = r.i32()?;
            let key = r.rest();
            check_secret_key(key, NAME)?;
            Ok(StartupPacket::CancelRequest { process_id, secret_key: Bytes::copy_from_slice(key) })
        }
        _ => {
            let (major, minor) = ((code >> 16) as u16, (code & 0xffff) as u16);
            if major != PROTOCOL_MAJOR {
                return Err(ProtocolError::UnsupportedProtocol { major, minor });
            }
            let mut params = Vec::new();
            loop {
                let name = r.cstr()?;
                if name.is_empty() {
                    break;
                }
                let value = r.cstr()?;
                params.push((
                    utf8(name, NAME, "parameter name")?.to_owned(),
                    utf8(value, NAME, "parameter value")?.to_owned(),
                ));
            }
            r.finish()?;
            Ok(StartupPacket::Startup(StartupMessage { major, minor, params }))
        }
    }
}

impl ToBytes for StartupPacket {
    fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        let mut w = Writer::untyped(NAME);
        match self {
            Self::SslRequest => {
                w.i32(SSL_REQUEST_CODE);
            }
            Self::GssEncRequest => {
                w.i32(GSSENC_REQUEST_CODE);
            }
            Self::CancelRequest { process_id, secret_key } => {
                check_secret_key(secret_key, NAME)?;
                w.i32(CANCEL_REQUEST_CODE).i32(*process_id).bytes(secret_key);
            }
            Self::Startup(m) => {
                w.i32((i32::from(m.major) << 16) | i32::from(m.minor));
                for (name, value) in &m.params {
                    if name.is_empty() {
                        return Err(ProtocolError::Encode { message: NAME, reason: "empty parameter name" });
                    }
                    w.cstr(name.as_bytes())?.cstr(value.as_bytes())?;
                }
                w.u8(0);
            }
        }
        w.finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn startup(params: &[(&str, &str)]) -> StartupPacket {
        StartupPacket::Startup(StartupMessage {
            major: 3,
            minor: 0,
            params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        })
    }

    #[test]
    fn round_trips_every_kind() {
        for p in [
            StartupPacket::SslRequest,
            StartupPacket::GssEncRequest,
            StartupPacket::CancelRequest { process_id: 9, secret_key: Bytes::from_static(b"abcd") },
            startup(&[("user", "alice"), ("database", "bank")]),
            startup(&[]),
        ] {
            let wire = p.to_bytes().unwrap();
            assert_eq!(decode_startup(&wire, 10_000).unwrap(), Some((wire.len(), p.clone())));
            // every strict prefix asks for more bytes
            for cut in 0..wire.len() {
                assert_eq!(decode_startup(wire.get(..cut).unwrap(), 10_000).unwrap(), None);
            }
        }
    }

    #[test]
    fn protocol_3_0_is_196608() {
        let wire = startup(&[]).to_bytes().unwrap();
        assert_eq!(wire.get(4..8).unwrap(), 196_608_i32.to_be_bytes());
    }

    #[test]
    fn rejects_bad_packets() {
        let err = |data: &[u8]| decode_startup(data, 10_000).unwrap_err().to_string();
        assert_eq!(err(b"\0\0\0\x08\x00\x02\x00\x00"), "startup packet: unsupported protocol 2.0");
        assert_eq!(
            decode_startup(b"\0\0\0\x08\x04\xd2\x16\x30", 10_000).unwrap(),
            Some((8, StartupPacket::GssEncRequest))
        );
        assert_eq!(err(b"\0\0\0\x08\x04\xd2\x16\x31"), "startup packet: unsupported protocol 1234.5681");
        assert_eq!(err(b"\0\0\0\x04"), "startup packet: invalid length 4");
        assert_eq!(err(b"\xff\xff\xff\xff"), "startup packet: invalid length -1");
        assert_eq!(err(b"\0\x01\0\0"), "message length 65536 exceeds limit 10000");
        // SSLRequest with extra bytes
        assert!(decode_startup(b"\0\0\0\x0c\x04\xd2\x16\x2f\0\0\0\0", 10_000).is_err());
        // parameters without the final terminator / value
        assert!(decode_startup(b"\0\0\0\x0d\0\x03\0\0user\0", 10_000).is_err());
        assert!(decode_startup(b"\0\0\0\x0c\0\x03\0\0u\0v\0", 10_000).is_err());
        // cancel with a 2-byte key
        assert!(decode_startup(b"\0\0\0\x0e\x04\xd2\x16\x2e\0\0\0\x01ab", 10_000).is_err());
    }
}
