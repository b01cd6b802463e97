//! PostgreSQL v3 wire protocol: framing, message codecs and the per-session state machine.
//!
//! - [`frame`]: incremental framing with a message size guard;
//! - [`messages`]: one module per message family, decoded zero-copy over [`bytes::Bytes`];
//! - [`session`]: the relay-phase state machine that turns both directions of a session into
//!   audit [`session::Statement`]s;
//! - [`policy`]: the session's SQL policy hook; [`sql`]: the SQL normalizer and the shared cache of
//!   statement classes it feeds;
//! - [`preview`]: the first rows of each statement's result, as forwarded, for the audit trail.

pub mod error;
pub mod frame;
pub mod mask;
pub mod messages;
pub mod policy;
pub mod preview;
pub mod session;
pub mod sql;

pub use error::ProtocolError;
pub use frame::{Forward, Framer};
pub use policy::{Check, CheckFailed, Policy, Verdict};
pub use preview::{Preview, PreviewLimits};
pub use session::{Held, HeldKind, Session, Statement, StatementKind, StatementStatus};
pub use sql::{normalize, SqlCache};
