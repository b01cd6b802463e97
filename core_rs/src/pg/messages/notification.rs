//! NotificationResponse (B) message: a NOTIFY delivered to a listening session.

use bytes::Bytes;

use super::{FromBytes, Message, Reader, ToBytes, Writer};
use crate::pg::error::ProtocolError;

/// `A`: notifying backend's process id, channel and payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationResponse {
    pub process_id: i32,
    pub channel: Bytes,
    pub payload: Bytes,
}

impl Message for NotificationResponse {
    const CODE: u8 = b'A';
    const NAME: &'static str = "notificationresponse";
}

impl FromBytes for NotificationResponse {
    fn from_bytes(body: &Bytes) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, Self::NAME);
        let process_id = r.i32()?;
        let channel = body.slice_ref(r.cstr()?);
        let payload = body.slice_ref(r.cstr()?);
        r.finish()?;
        Ok(Self { process_id, channel, payload })
    }
}

impl ToBytes for NotificationResponse {
    fn to_bytes(&self) -> Result<Bytes, ProtocolError> {
        let mut w = Writer::typed(Self::CODE, Self::NAME);
        w.i32(self.process_id).cstr(&self.channel)?.cstr(&self.payload)?;
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::messages::test_util::round_trip;

    #[test]
    fn round_trips() {
        let a = NotificationResponse {
            process_id: 7,
            channel: Bytes::from_static(b"approvals"),
            payload: Bytes::from_static(b"{\"id\":1}"),
        };
        assert_eq!(round_trip(&a), a);
    }
}
