//! [`StreamMasker`]: masking of byte streams split into arbitrary reads (SKELETON).

use std::sync::Arc;

use super::{Counts, Masker};

/// Masks a byte stream read by read; a value split across reads is still masked.
#[derive(Debug)]
pub struct StreamMasker {
    masker: Arc<Masker>,
    carry: Vec<u8>,
    counts: Counts,
}

impl StreamMasker {
    pub fn new(masker: Arc<Masker>) -> Self {
        Self { masker, carry: Vec::new(), counts: Counts::default() }
    }

    /// Feeds one read; returns the bytes that are safe to emit now (masked).
    pub fn feed(&mut self, data: &[u8]) -> Vec<u8> {
        self.carry.extend_from_slice(data);
        Vec::new()
    }

    /// Emits everything still held back (masked), as at the end of the stream.
    pub fn flush(&mut self) -> Vec<u8> {
        let carry = std::mem::take(&mut self.carry);
        self.masker.mask(&carry, &mut self.counts).unwrap_or(carry)
    }

    /// Bytes held back.
    pub fn buffered(&self) -> usize {
        self.carry.len()
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    pub fn masker(&self) -> &Arc<Masker> {
        &self.masker
    }
}
