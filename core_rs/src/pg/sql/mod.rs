//! SQL text as the policy fast path sees it: a conservative normalizer ([`normalize`]) that turns
//! a statement into the key of its shape, and the [`SqlCache`] of class masks per shape shared by
//! every session.

pub mod cache;
pub mod normalize;

pub use cache::SqlCache;
pub use normalize::normalize;
