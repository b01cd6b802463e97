//! PortalSuspended (B) message: an Execute hit its row limit; the portal can be run again.

use super::empty_message;

empty_message!(
    /// `s`: the row limit of Execute was reached.
    PortalSuspended, b's', "portalsuspended"
);
