//! Incremental framing of typed messages (1 type byte + int32 length + body) with a size guard.
//!
//! [`Framer`] serves the authentication phase (one message at a time). [`Stream`] serves the relay
//! hot path: it walks every complete frame of a socket read in place, carries an incomplete tail
//! over to the next read, and reports what to forward as a [`Forward`] so that an unchanged read
//! can be forwarded without a copy.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use super::error::ProtocolError;

/// Size of a typed message header: type byte and length word.
pub const HEADER_LEN: usize = 5;

/// Parses a frame header, returning the frame's total size (type byte included).
///
/// The length word counts itself, so it must be at least 4, and at most `max` (the guard counts
/// the length word too).
#[inline]
pub fn frame_len(header: [u8; HEADER_LEN], max: usize) -> Result<usize, ProtocolError> {
    let [_, a, b, c, d] = header;
    let len = i32::from_be_bytes([a, b, c, d]);
    match usize::try_from(len) {
        Ok(n) if n < 4 => Err(ProtocolError::InvalidLength(i64::from(len))),
        Ok(n) if n > max => Err(ProtocolError::TooLarge { length: i64::from(len), limit: max }),
        Ok(n) => Ok(n + 1),
        Err(_) => Err(ProtocolError::InvalidLength(i64::from(len))),
    }
}

/// The header at `pos`, when all of it is present.
#[inline]
fn header_at(data: &[u8], pos: usize) -> Option<[u8; HEADER_LEN]> {
    data.get(pos..pos.checked_add(HEADER_LEN)?)?.try_into().ok()
}

/// Incremental splitter of typed messages for the authentication phase (not the hot path).
#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    max_message_size: usize,
}

impl Framer {
    /// A framer rejecting messages whose length word exceeds `max_message_size`.
    pub fn new(max_message_size: usize) -> Self {
        Self { buf: BytesMut::new(), max_message_size }
    }

    /// Appends bytes read from the peer.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete message as (type byte, body), or `None` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<(u8, Bytes)>, ProtocolError> {
        let Some(header) = header_at(&self.buf, 0) else { return Ok(None) };
        let total = frame_len(header, self.max_message_size)?;
        if self.buf.len() < total {
            return Ok(None);
        }
        let mut frame = self.buf.split_to(total).freeze();
        let body = frame.split_off(HEADER_LEN);
        Ok(Some((header[0], body)))
    }

    /// Returns and clears the bytes not consumed yet (e.g. when switching to TLS or to relaying).
    pub fn take_remaining(&mut self) -> Bytes {
        self.buf.split().freeze()
    }

    /// Number of bytes buffered.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// What to forward after feeding one read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forward {
    /// The whole input, unchanged (no copy needed).
    All,
    /// `head` (a frame completed from bytes carried over from earlier reads; may be empty)
    /// followed by `input[range]`.
    Split { head: Bytes, range: Range<usize> },
    /// Rewritten output (a frame hook replaced at least one frame).
    Rewritten(Bytes),
}

impl Forward {
    /// The bytes to forward, given the input that produced this.
    pub fn to_bytes(&self, input: &Bytes) -> Bytes {
        match self {
            Self::All => input.clone(),
            Self::Split { head, range } if head.is_empty() => input.slice(range.clone()),
            Self::Split { head, range } => {
                let mut out = BytesMut::with_capacity(head.len() + range.len());
                out.extend_from_slice(head);
                out.extend_from_slice(input.get(range.clone()).unwrap_or_default());
                out.freeze()
            }
            Self::Rewritten(b) => b.clone(),
        }
    }

    /// Number of bytes to forward.
    pub fn len(&self, input_len: usize) -> usize {
        match self {
            Self::All => input_len,
            Self::Split { head, range } => head.len() + range.len(),
            Self::Rewritten(b) => b.len(),
        }
    }

    /// Whether nothing is to be forwarded.
    pub fn is_empty(&self, input_len: usize) -> bool {
        self.len(input_len) == 0
    }
}

/// One complete frame handed to a [`Stream`] callback: `chunk[range]` is the whole frame.
pub struct Frame<'a> {
    pub code: u8,
    pub chunk: &'a Bytes,
    pub range: Range<usize>,
}

impl Frame<'_> {
    /// The whole frame (type byte, length word, body).
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        self.chunk.get(self.range.clone()).unwrap_or_default()
    }

    /// The body as a zero-copy slice of the chunk.
    pub fn body(&self) -> Bytes {
        self.chunk.slice(self.range.start.saturating_add(HEADER_LEN).min(self.range.end)..self.range.end)
    }
}

/// What a [`Stream::feed`] callback decides about one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Forward the frame unchanged.
    Keep,
    /// Forward this instead of the frame.
    Replace(Bytes),
    /// Stop before this frame: it and everything after it are returned unprocessed.
    Pause,
}

/// Builds the rewritten output once a frame callback replaces a frame.
struct Rewrite {
    out: BytesMut,
    /// Input offset up to which the input has been copied into `out`.
    copied: usize,
}

/// The per-direction framing state of a relayed session.
#[derive(Debug, Default)]
pub struct Stream {
    /// An incomplete frame carried over from earlier reads.
    partial: BytesMut,
}

impl Stream {
    /// Bytes of an incomplete frame carried over.
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }

    /// Walks the complete frames of `input` (after any carried-over partial frame).
    ///
    /// `check_type` vets each type byte as soon as it is seen; `on_frame` is called per complete
    /// frame and may replace it, or pause the stream before it. An incomplete tail is kept for the
    /// next call. Returns what to forward and, after a pause, the unprocessed rest of the input
    /// (the paused frame first), which the caller feeds again later.
    pub fn feed(
        &mut self,
        input: &Bytes,
        max: usize,
        check_type: impl Fn(u8) -> Result<(), ProtocolError>,
        mut on_frame: impl FnMut(Frame<'_>) -> Result<Step, ProtocolError>,
    ) -> Result<(Forward, Option<Bytes>), ProtocolError> {
        let data: &[u8] = input;
        let mut start = 0;
        let mut head = Bytes::new();
        let mut rewrite: Option<Rewrite> = None;

        if !self.partial.is_empty() {
            // complete the header first, then the frame
            let need = HEADER_LEN.saturating_sub(self.partial.len()).min(data.len());
            self.partial.extend_from_slice(data.get(..need).unwrap_or_default());
            start = need;
            let Some(header) = header_at(&self.partial, 0) else {
                return Ok((Forward::Split { head, range: 0..0 }, None));
            };
            let total = frame_len(header, max)?;
            let take = total.saturating_sub(self.partial.len()).min(data.len() - start);
            self.partial.extend_from_slice(data.get(start..start + take).unwrap_or_default());
            start += take;
            if self.partial.len() < total {
                return Ok((Forward::Split { head, range: 0..0 }, None));
            }
            let frame = self.partial.split().freeze();
            head = match on_frame(Frame { code: header[0], chunk: &frame, range: 0..total })? {
                Step::Keep => frame,
                Step::Replace(new) => new,
                Step::Pause => {
                    let mut rest = BytesMut::with_capacity(frame.len() + data.len() - start);
                    rest.extend_from_slice(&frame);
                    rest.extend_from_slice(data.get(start..).unwrap_or_default());
                    return Ok((Forward::Split { head: Bytes::new(), range: 0..0 }, Some(rest.freeze())));
                }
            };
        }

        let mut pos = start;
        let mut paused = false;
        while let Some(header) = header_at(data, pos) {
            check_type(header[0])?;
            let total = frame_len(header, max)?;
            let end = pos.saturating_add(total);
            if end > data.len() {
                break;
            }
            let new = match on_frame(Frame { code: header[0], chunk: input, range: pos..end })? {
                Step::Keep => None,
                Step::Replace(new) => Some(new),
                Step::Pause => {
                    paused = true;
                    break;
                }
            };
            if let Some(new) = new {
                let r = rewrite.get_or_insert_with(|| {
                    let mut out = BytesMut::with_capacity(head.len() + data.len());
                    out.extend_from_slice(&head);
                    Rewrite { out, copied: start }
                });
                r.out.extend_from_slice(data.get(r.copied..pos).unwrap_or_default());
                r.out.extend_from_slice(&new);
                r.copied = end;
            }
            pos = end;
        }

        let rest = if paused {
            Some(input.slice(pos..))
        } else {
            // keep the tail, vetting what can be vetted already
            let tail = data.get(pos..).unwrap_or_default();
            if let Some(&code) = tail.first() {
                check_type(code)?;
            }
            if let Some(header) = header_at(tail, 0) {
                frame_len(header, max)?;
            }
            self.partial.extend_from_slice(tail);
            None
        };

        let forward = match rewrite {
            Some(mut r) => {
                r.out.extend_from_slice(data.get(r.copied..pos).unwrap_or_default());
                Forward::Rewritten(r.out.freeze())
            }
            None if head.is_empty() && start == 0 && pos == data.len() => Forward::All,
            None => Forward::Split { head, range: start..pos },
        };
        Ok((forward, rest))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn msg(code: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![code];
        v.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn framer_splits_and_guards() {
        let mut f = Framer::new(100);
        let wire = [msg(b'R', b"\0\0\0\0"), msg(b'Z', b"I")].concat();
        f.feed(&wire[..3]);
        assert_eq!(f.next_message().unwrap(), None);
        f.feed(&wire[3..]);
        assert_eq!(f.next_message().unwrap(), Some((b'R', Bytes::from_static(b"\0\0\0\0"))));
        assert_eq!(f.next_message().unwrap(), Some((b'Z', Bytes::from_static(b"I"))));
        assert_eq!(f.next_message().unwrap(), None);
        f.feed(b"Z\x7f\xff\xff\xff");
        assert_eq!(f.next_message().unwrap_err().to_string(), "message length 2147483647 exceeds limit 100");
        assert_eq!(f.take_remaining().len(), 5);
        f.feed(b"Z\0\0\0\x03");
        assert_eq!(f.next_message().unwrap_err().to_string(), "invalid message length 3");
    }

    #[test]
    fn stream_forwards_whole_reads_unchanged_and_carries_tails() {
        let wire = Bytes::from([msg(b'Q', b"select 1\0"), msg(b'S', b""), msg(b'X', b"")].concat());
        let ok = |_: u8| Ok(());
        for cut in 0..=wire.len() {
            let mut s = Stream::default();
            let mut codes = Vec::new();
            let mut out = Vec::new();
            for part in [wire.slice(..cut), wire.slice(cut..)] {
                let (fwd, rest) = s
                    .feed(&part, 1000, ok, |f| {
                        codes.push(f.code);
                        Ok(Step::Keep)
                    })
                    .unwrap();
                assert!(rest.is_none());
                if cut == 0 || cut == wire.len() {
                    assert!(matches!(fwd, Forward::All), "{fwd:?}");
                }
                out.extend_from_slice(&fwd.to_bytes(&part));
            }
            assert_eq!(codes, b"QSX");
            assert_eq!(out, wire);
            assert_eq!(s.buffered(), 0);
        }
    }

    #[test]
    fn stream_rewrites_frames() {
        let wire = Bytes::from([msg(b'D', b"a"), msg(b'C', b"x\0"), msg(b'D', b"b")].concat());
        let mut s = Stream::default();
        let replace = |f: Frame<'_>| {
            Ok(if f.code == b'D' { Step::Replace(Bytes::from(msg(b'D', b"**"))) } else { Step::Keep })
        };
        let (fwd, _) = s.feed(&wire, 1000, |_| Ok(()), replace).unwrap();
        let expected = [msg(b'D', b"**"), msg(b'C', b"x\0"), msg(b'D', b"**")].concat();
        assert_eq!(fwd.to_bytes(&wire), expected);
    }

    #[test]
    fn stream_pauses_before_a_frame_and_returns_the_rest() {
        let wire = Bytes::from([msg(b'T', b"t"), msg(b'D', b"a"), msg(b'C', b"x\0")].concat());
        for cut in 0..=wire.len() {
            let mut s = Stream::default();
            let pause = |f: Frame<'_>| Ok(if f.code == b'D' { Step::Pause } else { Step::Keep });
            let (a, rest_a) = s.feed(&wire.slice(..cut), 1000, |_| Ok(()), pause).unwrap();
            let mut out = a.to_bytes(&wire.slice(..cut)).to_vec();
            let rest = match rest_a {
                Some(rest) => [&rest[..], &wire[cut..]].concat(),
                None => {
                    let (b, rest_b) = s.feed(&wire.slice(cut..), 1000, |_| Ok(()), pause).unwrap();
                    out.extend_from_slice(&b.to_bytes(&wire.slice(cut..)));
                    rest_b.unwrap().to_vec()
                }
            };
            assert_eq!(out, msg(b'T', b"t"), "cut {cut}");
            assert_eq!(rest, [msg(b'D', b"a"), msg(b'C', b"x\0")].concat(), "cut {cut}");
            assert_eq!(s.buffered(), 0);
        }
    }

    #[test]
    fn stream_rejects_early() {
        let mut s = Stream::default();
        let bad = |c: u8| if c == b'?' { Err(ProtocolError::InvalidFrontendType(c)) } else { Ok(()) };
        assert!(s.feed(&Bytes::from_static(b"?"), 100, bad, |_| Ok(Step::Keep)).is_err());
        let mut s = Stream::default();
        let err =
            s.feed(&Bytes::from_static(b"D\x00\x10\x00\x00"), 100, bad, |_| Ok(Step::Keep)).unwrap_err();
        assert_eq!(err.to_string(), "message length 1048576 exceeds limit 100");
    }
}
