//! decode_startup on arbitrary bytes: never panics, never consumes more than it was given.
#![no_main]

use bytes::Bytes;
use hoopgw_core::pg::messages::startup::decode_startup;
use hoopgw_core::pg::messages::ToBytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((consumed, packet))) = decode_startup(data, 10_000) {
        assert!(consumed <= data.len());
        // what decodes re-encodes to the same bytes
        let wire: Bytes = packet.to_bytes().expect("re-encode");
        assert_eq!(&wire[..], &data[..consumed]);
    }
});
