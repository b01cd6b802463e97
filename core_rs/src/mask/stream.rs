//! [`StreamMasker`]: masking of byte streams split into arbitrary reads.
//!
//! The stream keeps `buf` = context + carry. The carry is what has been read but not emitted yet:
//! the suffix that could still be the beginning of a match, at most `window` bytes
//! ([`Masker::max_match_len`]). The context is what was already emitted before it, up to `window`
//! bytes and from the last line break on: it is scanned again with the carry so that the detectors
//! see what precedes a value (boundaries, the key of a `password=` assignment) as in a whole buffer.
//! After a complete line the context is that line break alone, and a scan costs little more than the
//! bytes just read.
//!
//! Each read is appended and the whole buffer scanned; the bytes up to a split point `p` are emitted:
//! - `p` is at least `len - window` (no more than the window is held back) and, when a line break
//!   comes later, just after the last one (a line is emitted as soon as it is complete, since no
//!   detector matches across a line break);
//! - a match crossing `p` is emitted whole, unless it ends exactly at the end of the buffer and fits
//!   in the window: it might still grow, so it is held back (`p` moves to its start).
//!
//! A match that starts before `len - window` and is at most `window` long ends before the last byte
//! read: more input cannot change it. So for every match no longer than the window, the
//! concatenation of the outputs equals [`Masker::mask`] of the whole stream. Custom patterns that
//! match across a line break, or longer than the window, may be split and missed.

use std::sync::Arc;

use super::engine::Scratch;
use super::{Counts, Masker};

/// Spare capacity a stream keeps between reads beyond its two windows.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Masks a byte stream read by read; a value split across reads is still masked.
#[derive(Debug)]
pub struct StreamMasker {
    masker: Arc<Masker>,
    /// Context (already emitted) followed by the carry (not emitted yet).
    buf: Vec<u8>,
    /// Length of the context at the front of `buf`.
    ctx: usize,
    counts: Counts,
    scratch: Scratch,
}

impl StreamMasker {
    pub fn new(masker: Arc<Masker>) -> Self {
        Self { masker, buf: Vec::new(), ctx: 0, counts: Counts::default(), scratch: Scratch::default() }
    }

    /// Feeds one read; returns the bytes that are safe to emit now (masked).
    pub fn feed(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.feed_into(data, &mut out);
        out
    }

    /// Like [`Self::feed`], appending to `out`.
    pub fn feed_into(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if !self.masker.has_detectors() {
            out.extend_from_slice(data);
            return;
        }
        self.buf.extend_from_slice(data);
        let len = self.buf.len();
        let window = self.masker.max_match_len();
        if len - self.ctx <= window && memchr::memchr(b'\n', data).is_none() {
            // the carry fits in the window and no line was completed: nothing can be emitted
            // (`p` would stay at the start of the carry), so no scan (small reads stay cheap)
            return;
        }
        self.masker.find_hits(&self.buf, &mut self.scratch);

        let mut p = len.saturating_sub(window).max(self.ctx);
        if let Some(nl) = self.buf.get(self.ctx..).and_then(|carry| memchr::memrchr(b'\n', carry)) {
            p = p.max(self.ctx + nl + 1);
        }
        // the one match crossing `p`, if any (the matches do not overlap)
        if let Some(h) = self.scratch.hits.iter().find(|h| h.start.max(self.ctx) < p && h.end > p) {
            let start = h.start.max(self.ctx);
            p = if h.end == len && len - start <= window { start } else { h.end };
        }
        self.emit(p, window, out);
    }

    /// Emits everything still held back (masked), as at the end of the stream.
    pub fn flush(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.flush_into(&mut out);
        out
    }

    /// Like [`Self::flush`], appending to `out`.
    pub fn flush_into(&mut self, out: &mut Vec<u8>) {
        if self.buffered() == 0 {
            return;
        }
        self.masker.find_hits(&self.buf, &mut self.scratch);
        let window = self.masker.max_match_len();
        self.emit(self.buf.len(), window, out);
    }

    /// Emits `buf[ctx..p]` with the matches found by the last scan, then keeps up to `window` bytes
    /// before `p` as the next context.
    fn emit(&mut self, p: usize, window: usize, out: &mut Vec<u8>) {
        if p > self.ctx {
            out.reserve(p - self.ctx);
            self.masker.render_hits(&self.buf, self.ctx, p, &self.scratch.hits, &mut self.counts, out);
        }
        // context: up to `window` bytes, from the last line break on (the detectors see no further
        // back than a line break: none of them matches across one)
        let floor = p.saturating_sub(window);
        let keep_from = match self.buf.get(floor..p).and_then(|ctx| memchr::memrchr(b'\n', ctx)) {
            Some(nl) => floor + nl,
            None => floor,
        };
        self.buf.drain(..keep_from.min(self.buf.len()));
        self.ctx = p - keep_from;
        // a big read leaves no big buffers behind (what is kept is at most about two windows)
        let keep_capacity = 2 * window + KEEP_CAPACITY;
        if self.buf.capacity() > keep_capacity {
            self.buf.shrink_to(keep_capacity.max(self.buf.len()));
        }
        self.scratch.trim();
        self.scratch.hits.clear();
    }

    /// Bytes held back.
    pub fn buffered(&self) -> usize {
        self.buf.len().saturating_sub(self.ctx)
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    pub fn masker(&self) -> &Arc<Masker> {
        &self.masker
    }
}
