//! PgSession::feed_server with masking on (every detector, column rules), arbitrary chunking, and
//! catalog requests answered from the input itself.
#![no_main]

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use hoopgw_core::mask::{MaskConfig, Masker, Style, BUILTIN_DETECTORS};
use hoopgw_core::pg::mask::{CopyFormat, CopyShape, FieldInfo, TableInfo};
use hoopgw_core::pg::Session;
use libfuzzer_sys::fuzz_target;

mod chunks;

fn masker() -> Arc<Masker> {
    static M: OnceLock<Arc<Masker>> = OnceLock::new();
    M.get_or_init(|| {
        let cfg = MaskConfig {
            detectors: BUILTIN_DETECTORS.iter().map(|d| (d.to_string(), Style::Last4)).collect(),
            columns: vec![("*.secret".into(), Style::Hash), ("t.gone".into(), Style::Null)],
            hash_key: vec![7; 32],
            ..MaskConfig::default()
        };
        Arc::new(Masker::new(cfg).unwrap_or_else(|e| panic!("{e}")))
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<3>() else { return };
    let at = usize::from(u16::from_le_bytes([head[0], head[1]])).min(rest.len());
    let answer = head[2];
    let (client, server) = rest.split_at(at);
    let mut session = Session::new(4096);
    session.set_masker(Some(masker()));
    for piece in chunks::chunks(client) {
        if session.feed_client(&piece, 0).is_err() {
            break;
        }
    }
    for piece in chunks::chunks(server) {
        if session.feed_server(&piece, 1).is_err() {
            return;
        }
        while let Some(request) = session.catalog_request().cloned() {
            let columns: std::collections::HashMap<i16, String> =
                [(1, "secret".to_string()), (2, "gone".to_string())].into_iter().collect();
            let tables = request
                .tables
                .iter()
                .filter(|oid| (**oid as u8) & 1 == answer & 1)
                .map(|oid| {
                    (*oid, Some(TableInfo { schema: "s".into(), name: "t".into(), columns: columns.clone() }))
                })
                .collect();
            let types =
                request.types.iter().map(|oid| (*oid, if answer & 2 == 0 { 'S' } else { 'N' })).collect();
            let copy = request.copy.as_ref().filter(|_| answer & 4 == 0).map(|_| CopyShape {
                format: [CopyFormat::Text, CopyFormat::Csv, CopyFormat::Binary][usize::from(answer >> 3) % 3],
                delimiter: b',',
                quote: b'"',
                escape: if answer & 0x40 == 0 { b'"' } else { b'\\' },
                null: vec![],
                header: answer & 0x80 != 0,
                fields: (1..=2)
                    .map(|attnum| FieldInfo {
                        table_oid: 16384,
                        attnum,
                        type_oid: 25,
                        label: Bytes::from_static(b"secret"),
                        format: 0,
                    })
                    .collect(),
            });
            session.resolve(tables, types, copy);
            if session.feed_server(&Bytes::new(), 2).is_err() {
                return;
            }
        }
        let _ = (session.pending(), session.in_copy(), session.tx_status(), session.mask_counts());
    }
});
