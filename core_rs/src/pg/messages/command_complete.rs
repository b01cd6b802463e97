//! CommandComplete (B) message: a command finished, with its tag.

use bytes::Bytes;

use super::{FromBytes, Message, Reader, ToBytes, Writer};
use crate::pg::error::ProtocolError;

/// Commands whose tag ends in a row count.
const COUNTED: [&[u8]; 8] =
    [b"SELECT", b"INSERT", b"UPDATE", b"DELETE", b"COPY", b"FETCH", b"MOVE", b"MERGE"];

/// `C` (backend): the command tag, e.g. `SELECT 3`, `INSERT 0 1`, `CREATE TABLE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandComplete {
    pub tag: Bytes,
}

impl CommandComplete {
    /// Rows affected or returned when the tag carries a count (`SELECT n`, `INSERT oid n`, ...).
    pub fn rows(&self) -> Option<u64> {
        tag_rows(&self.tag)
    }
}

/// The row count at the end of a command tag, for the commands that report one.
pub fn tag_rows(tag: &[u8]) -> Option<u64> {
    let (command, rest) = tag.split_at(memchr::memchr(b' ', tag)?);
    if !COUNTED.contains(&command) {
        return None;
    }
    let last = rest.rsplit(|b| *b == b' ').next()?;
    std::str::from_utf8(last).ok()?.parse().ok()
}

impl Message for CommandComplete {
    const CODE: u8 = b'C';
    const NAME: &'static str = "commandcomplete";
}

impl FromBytes for CommandComplete {
    fn from_bytes(body: &Bytes) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, Self::NAME);
        let tag = body.slice_ref(r.cstr()?);
        r.finish()?;
        Ok(Self { tag })
    }
}

impl ToBytes for CommandComplete {
    fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        let mut w = Writer::typed(Self::CODE, Self::NAME);
        w.cstr(&self.tag)?;
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::messages::test_util::round_trip;

    #[test]
    fn counts_rows_from_tags() {
        assert_eq!(tag_rows(b"SELECT 3"), Some(3));
        assert_eq!(tag_rows(b"INSERT 0 7"), Some(7));
        assert_eq!(tag_rows(b"UPDATE 0"), Some(0));
        assert_eq!(tag_rows(b"MERGE 12"), Some(12));
        assert_eq!(tag_rows(b"COPY 5"), Some(5));
        assert_eq!(tag_rows(b"CREATE TABLE"), None);
        assert_eq!(tag_rows(b"SHOW"), None);
        assert_eq!(tag_rows(b"SELECT"), None);
        assert_eq!(tag_rows(b"SELECT x"), None);
        let c = CommandComplete { tag: Bytes::from_static(b"DELETE 2") };
        assert_eq!(round_trip(&c).rows(), Some(2));
    }
}
