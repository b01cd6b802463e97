//! NoData (B) message: the described statement or portal returns no rows.

use super::empty_message;

empty_message!(
    /// `n`: answer to Describe for a command without a result set.
    NoData, b'n', "nodata"
);
