//! NoticeResponse and ErrorResponse: their text fields go through the masker (a unique-violation
//! detail can echo a card number).

use bytes::{BufMut, Bytes, BytesMut};

use crate::mask::{Counts, Masker};

/// Fields that are never data: severity, SQLSTATE, source file/line/routine.
const CODE_FIELDS: &[u8] = b"SVCFLR";

/// Masks the fields of a Notice/Error frame (type byte, length word, body); `None` when nothing
/// changed or the frame does not parse.
pub fn mask_notice(frame: &[u8], masker: &Masker, counts: &mut Counts) -> Option<Bytes> {
    if !masker.has_detectors() {
        return None;
    }
    let body = frame.get(5..)?;
    let mut out: Option<BytesMut> = None;
    let mut pos = 0;
    let mut masked = Vec::new();
    loop {
        let code = *body.get(pos)?;
        if code == 0 {
            break;
        }
        let start = pos + 1;
        let end = start + memchr::memchr(0, body.get(start..)?)?;
        let value = body.get(start..end)?;
        masked.clear();
        let changed = !CODE_FIELDS.contains(&code) && masker.mask_into(value, counts, &mut masked);
        // a masked value never contains NUL: masks are printable
        if changed && !masked.contains(&0) {
            let o = out.get_or_insert_with(|| {
                let mut o = BytesMut::with_capacity(frame.len() + 32);
                o.extend_from_slice(frame.get(..5 + pos).unwrap_or_default());
                o
            });
            o.put_u8(code);
            o.extend_from_slice(&masked);
            o.put_u8(0);
        } else if let Some(o) = out.as_mut() {
            o.extend_from_slice(body.get(pos..=end)?);
        }
        pos = end + 1;
    }
    let mut o = out?;
    o.put_u8(0);
    let len = i32::try_from(o.len() - 1).ok()?;
    o.get_mut(1..5)?.copy_from_slice(&len.to_be_bytes());
    Some(o.freeze())
}

/// Masks the channel and payload of a NotificationResponse frame (`NOTIFY chan, 'payload'`).
pub fn mask_notification(frame: &[u8], masker: &Masker, counts: &mut Counts) -> Option<Bytes> {
    if !masker.has_detectors() {
        return None;
    }
    let body = frame.get(5..)?;
    let pid = body.get(..4)?;
    let rest = body.get(4..)?;
    let channel_end = memchr::memchr(0, rest)?;
    let channel = rest.get(..channel_end)?;
    let payload_rest = rest.get(channel_end + 1..)?;
    let payload = payload_rest.get(..memchr::memchr(0, payload_rest)?)?;
    let (mut c, mut p) = (Vec::new(), Vec::new());
    let channel_changed = masker.mask_into(channel, counts, &mut c);
    let payload_changed = masker.mask_into(payload, counts, &mut p);
    if !channel_changed && !payload_changed {
        return None;
    }
    let channel = if channel_changed { &c[..] } else { channel };
    let payload = if payload_changed { &p[..] } else { payload };
    let mut o = BytesMut::with_capacity(frame.len() + 16);
    o.put_u8(b'A');
    o.put_i32(i32::try_from(4 + 4 + channel.len() + 1 + payload.len() + 1).ok()?);
    o.extend_from_slice(pid);
    o.extend_from_slice(channel);
    o.put_u8(0);
    o.extend_from_slice(payload);
    o.put_u8(0);
    Some(o.freeze())
}
