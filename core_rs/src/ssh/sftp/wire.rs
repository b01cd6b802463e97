//! SFTP v3 wire primitives: packet types, status codes, open flags, a bounds-checked reader, the
//! packet framer and the STATUS encoder.

use crate::ssh::error::SftpError;

pub const FXP_INIT: u8 = 1;
pub const FXP_VERSION: u8 = 2;
pub const FXP_OPEN: u8 = 3;
pub const FXP_CLOSE: u8 = 4;
pub const FXP_READ: u8 = 5;
pub const FXP_WRITE: u8 = 6;
pub const FXP_LSTAT: u8 = 7;
pub const FXP_FSTAT: u8 = 8;
pub const FXP_SETSTAT: u8 = 9;
pub const FXP_FSETSTAT: u8 = 10;
pub const FXP_OPENDIR: u8 = 11;
pub const FXP_READDIR: u8 = 12;
pub const FXP_REMOVE: u8 = 13;
pub const FXP_MKDIR: u8 = 14;
pub const FXP_RMDIR: u8 = 15;
pub const FXP_REALPATH: u8 = 16;
pub const FXP_STAT: u8 = 17;
pub const FXP_RENAME: u8 = 18;
pub const FXP_READLINK: u8 = 19;
pub const FXP_SYMLINK: u8 = 20;
pub const FXP_STATUS: u8 = 101;
pub const FXP_HANDLE: u8 = 102;
pub const FXP_DATA: u8 = 103;
pub const FXP_NAME: u8 = 104;
pub const FXP_ATTRS: u8 = 105;
pub const FXP_EXTENDED: u8 = 200;
pub const FXP_EXTENDED_REPLY: u8 = 201;

pub const FX_OK: u32 = 0;
pub const FX_PERMISSION_DENIED: u32 = 3;

pub const FXF_READ: u32 = 0x01;
pub const FXF_WRITE: u32 = 0x02;
pub const FXF_APPEND: u32 = 0x04;
pub const FXF_CREAT: u32 = 0x08;
pub const FXF_TRUNC: u32 = 0x10;
pub const FXF_EXCL: u32 = 0x20;

/// The longest handle the protocol allows.
pub const MAX_HANDLE: usize = 256;

/// Names of the set open flags, in protocol order.
pub fn open_flags(pflags: u32) -> Vec<&'static str> {
    [
        (FXF_READ, "read"),
        (FXF_WRITE, "write"),
        (FXF_APPEND, "append"),
        (FXF_CREAT, "create"),
        (FXF_TRUNC, "truncate"),
        (FXF_EXCL, "excl"),
    ]
    .into_iter()
    .filter(|(bit, _)| pflags & bit != 0)
    .map(|(_, name)| name)
    .collect()
}

/// Whether an open with these flags can change the file.
pub fn open_writes(pflags: u32) -> bool {
    pflags & (FXF_WRITE | FXF_APPEND | FXF_CREAT | FXF_TRUNC) != 0
}

/// The size of the first packet of `buf` (length word included) once it is complete, None while
/// it is not. Errors on a length word of 0 or above `max_packet`, as soon as the word is there.
pub fn frame(buf: &[u8], max_packet: usize) -> Result<Option<usize>, SftpError> {
    let Some(length) = be32(buf) else { return Ok(None) };
    if length == 0 {
        return Err(SftpError::EmptyPacket);
    }
    if usize::try_from(length).map_or(true, |n| n > max_packet) {
        return Err(SftpError::TooLarge { length, limit: max_packet });
    }
    let total = 4 + length as usize;
    Ok((buf.len() >= total).then_some(total))
}

/// The big-endian uint32 at the start of `b`, if there are 4 bytes.
pub fn be32(b: &[u8]) -> Option<u32> {
    b.get(..4)?.try_into().ok().map(u32::from_be_bytes)
}

/// Bounds-checked reader over one packet body (after the length word and the type byte).
pub struct Reader<'a> {
    buf: &'a [u8],
    packet: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], packet: &'static str) -> Self {
        Self { buf, packet }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], SftpError> {
        if self.buf.len() < n {
            return Err(SftpError::Truncated { packet: self.packet, field });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub fn u32(&mut self, field: &'static str) -> Result<u32, SftpError> {
        be32(self.take(4, field)?).ok_or(SftpError::Truncated { packet: self.packet, field })
    }

    pub fn u64(&mut self, field: &'static str) -> Result<u64, SftpError> {
        let hi = u64::from(self.u32(field)?);
        let lo = u64::from(self.u32(field)?);
        Ok(hi << 32 | lo)
    }

    /// A `string`: uint32 length, then that many bytes.
    pub fn string(&mut self, field: &'static str) -> Result<&'a [u8], SftpError> {
        let n = self.u32(field)?;
        self.take(n as usize, field)
    }

    /// A handle string (at most [`MAX_HANDLE`] bytes).
    pub fn handle(&mut self) -> Result<&'a [u8], SftpError> {
        let h = self.string("handle")?;
        if h.len() > MAX_HANDLE {
            return Err(SftpError::HandleTooLong { packet: self.packet, len: h.len() });
        }
        Ok(h)
    }
}

/// A complete `SSH_FXP_STATUS` packet (length word included), language tag empty.
pub fn status_packet(id: u32, code: u32, message: &str) -> Vec<u8> {
    let msg = message.as_bytes();
    // the message is ours (the gateway's), but never let it overflow the length word
    let msg = msg.get(..msg.len().min(64 * 1024)).unwrap_or_default();
    let body_len = 1 + 4 + 4 + 4 + msg.len() + 4;
    let mut out = Vec::with_capacity(4 + body_len);
    out.extend_from_slice(&(body_len as u32).to_be_bytes());
    out.push(FXP_STATUS);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
    out.extend_from_slice(&0u32.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_guards() {
        assert_eq!(frame(b"\0\0\0", 10), Ok(None));
        assert_eq!(frame(b"\0\0\0\x02\x01", 10), Ok(None));
        assert_eq!(frame(b"\0\0\0\x02\x01\x02\x03", 10), Ok(Some(6)));
        assert_eq!(frame(b"\0\0\0\0", 10), Err(SftpError::EmptyPacket));
        assert_eq!(frame(b"\xff\xff\xff\xff", 10), Err(SftpError::TooLarge { length: u32::MAX, limit: 10 }));
        assert_eq!(frame(b"\0\0\0\x0a", 10), Ok(None));
        assert!(frame(b"\0\0\0\x0b", 10).is_err());
    }

    #[test]
    fn reader_checks_lengths() {
        let mut r = Reader::new(b"\0\0\0\x05abc", "open");
        assert_eq!(r.string("filename"), Err(SftpError::Truncated { packet: "open", field: "filename" }));
        let mut r = Reader::new(b"\0\0\0\x01\0\0\0\x02\0\0\0\x03xyz", "read");
        assert_eq!(r.u64("offset"), Ok(0x1_0000_0002));
        assert_eq!(r.string("data"), Ok(&b"xyz"[..]));
        let long = [&300u32.to_be_bytes()[..], &[7u8; 300][..]].concat();
        assert_eq!(
            Reader::new(&long, "close").handle(),
            Err(SftpError::HandleTooLong { packet: "close", len: 300 })
        );
    }

    #[test]
    fn flags_and_status() {
        assert_eq!(open_flags(0x1a), vec!["write", "create", "truncate"]);
        assert!(!open_writes(FXF_READ | FXF_EXCL));
        assert!(open_writes(FXF_APPEND));
        assert_eq!(
            status_packet(7, 3, "no"),
            b"\0\0\0\x13\x65\0\0\0\x07\0\0\0\x03\0\0\0\x02no\0\0\0\0".to_vec()
        );
    }
}
