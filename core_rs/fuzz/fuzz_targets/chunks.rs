//! Shared by the targets: cut an input into pieces whose sizes come from the input itself.

use bytes::Bytes;

/// Splits `data` into pieces: the first byte seeds the piece sizes (1 to 64 bytes).
pub fn chunks(data: &[u8]) -> Vec<Bytes> {
    let Some((&seed, rest)) = data.split_first() else { return Vec::new() };
    let mut state = u32::from(seed) | 1;
    let mut out = Vec::new();
    let mut rest = rest;
    while !rest.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let n = (((state >> 16) % 64) as usize + 1).min(rest.len());
        let (a, b) = rest.split_at(n);
        out.push(Bytes::copy_from_slice(a));
        rest = b;
    }
    out
}
