//! Decoding of server→client SFTP packets into [`Reply`]s.

use super::wire::*;
use crate::ssh::error::SftpError;

/// One server packet, decoded as far as the audit needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<'a> {
    Version {
        version: u32,
    },
    Status {
        id: u32,
        code: u32,
    },
    Handle {
        id: u32,
        handle: &'a [u8],
    },
    Data {
        id: u32,
        len: u64,
    },
    /// NAME, ATTRS and EXTENDED_REPLY: only the request id matters.
    Other {
        id: u32,
    },
    /// A packet type this engine does not know (ignored).
    Unknown,
}

/// Decode one packet: `body` is everything after the length word (type byte first).
pub fn decode(body: &[u8]) -> Result<Reply<'_>, SftpError> {
    let Some((&kind, rest)) = body.split_first() else { return Ok(Reply::Unknown) };
    let name = match kind {
        FXP_VERSION => "version",
        FXP_STATUS => "status",
        FXP_HANDLE => "handle",
        FXP_DATA => "data",
        FXP_NAME => "name",
        FXP_ATTRS => "attrs",
        FXP_EXTENDED_REPLY => "extended reply",
        _ => return Ok(Reply::Unknown),
    };
    let mut r = Reader::new(rest, name);
    if kind == FXP_VERSION {
        return Ok(Reply::Version { version: r.u32("version")? });
    }
    let id = r.u32("request id")?;
    Ok(match kind {
        // the message and language tag are optional in practice (some v3 servers omit them)
        FXP_STATUS => Reply::Status { id, code: r.u32("error code")? },
        FXP_HANDLE => Reply::Handle { id, handle: r.handle()? },
        FXP_DATA => Reply::Data { id, len: r.string("data")?.len() as u64 },
        _ => Reply::Other { id },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_replies() {
        assert_eq!(decode(&[FXP_VERSION, 0, 0, 0, 3]), Ok(Reply::Version { version: 3 }));
        assert_eq!(decode(&[FXP_STATUS, 0, 0, 0, 9, 0, 0, 0, 2]), Ok(Reply::Status { id: 9, code: 2 }));
        assert_eq!(
            decode(&[FXP_DATA, 0, 0, 0, 9, 0, 0, 0, 2, b'h', b'i']),
            Ok(Reply::Data { id: 9, len: 2 })
        );
        assert_eq!(decode(&[FXP_NAME, 0, 0, 0, 4, 0xff]), Ok(Reply::Other { id: 4 }));
        assert_eq!(decode(&[150, 1]), Ok(Reply::Unknown));
        assert_eq!(
            decode(&[FXP_DATA, 0, 0, 0, 9, 0, 0, 0, 3, b'h']),
            Err(SftpError::Truncated { packet: "data", field: "data" })
        );
        assert_eq!(
            decode(&[FXP_STATUS, 0, 0]),
            Err(SftpError::Truncated { packet: "status", field: "request id" })
        );
    }
}
