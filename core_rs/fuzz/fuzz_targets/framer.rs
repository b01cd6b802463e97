//! Framer with arbitrary chunking, and every body decoder on every frame it yields.
#![no_main]

use hoopgw_core::pg::messages::{self as m, FromBytes};
use hoopgw_core::pg::Framer;
use libfuzzer_sys::fuzz_target;

mod chunks;

fuzz_target!(|data: &[u8]| {
    let mut framer = Framer::new(4096);
    for piece in chunks::chunks(data) {
        framer.feed(&piece);
        while let Ok(Some((code, body))) = framer.next_message() {
            let _ = match code {
                b'Q' => m::query::Query::from_bytes(&body).map(drop),
                b'P' => m::parse::Parse::from_bytes(&body).map(drop),
                b'B' => m::bind::Bind::from_bytes(&body).map(drop),
                b'E' => m::execute::Execute::from_bytes(&body)
                    .map(drop)
                    .and(m::error_notice::ErrorResponse::from_bytes(&body).map(drop)),
                b'D' => m::describe::Describe::from_bytes(&body)
                    .map(drop)
                    .and(m::data_row::DataRow::from_bytes(&body).map(drop)),
                b'C' => m::close::Close::from_bytes(&body)
                    .map(drop)
                    .and(m::command_complete::CommandComplete::from_bytes(&body).map(drop)),
                b'F' => m::function_call::FunctionCall::from_bytes(&body).map(drop),
                b'V' => m::function_call::FunctionCallResponse::from_bytes(&body).map(drop),
                b'f' => m::copy::CopyFail::from_bytes(&body).map(drop),
                b'G' | b'H' | b'W' => m::copy::CopyDirection::from_code(code)
                    .map_or(Ok(()), |d| m::copy::CopyResponse::decode(d, &body).map(drop)),
                b'p' => m::password::Password::cleartext(&body)
                    .map(drop)
                    .and(m::password::SaslInitialResponse::from_bytes(&body).map(drop)),
                b'R' => m::authentication::Authentication::from_bytes(&body).map(drop),
                b'K' => m::backend_key_data::BackendKeyData::from_bytes(&body).map(drop),
                b'S' => m::parameter_status::ParameterStatus::from_bytes(&body).map(drop),
                b'Z' => m::ready_for_query::ReadyForQuery::from_bytes(&body).map(drop),
                b'T' => m::row_description::RowDescription::from_bytes(&body).map(drop),
                b'N' => m::error_notice::NoticeResponse::from_bytes(&body).map(drop),
                b'A' => m::notification::NotificationResponse::from_bytes(&body).map(drop),
                b't' => m::parameter_description::ParameterDescription::from_bytes(&body).map(drop),
                b'v' => m::negotiate_protocol_version::NegotiateProtocolVersion::from_bytes(&body).map(drop),
                _ => Ok(()),
            };
        }
    }
    let _ = framer.take_remaining();
});
