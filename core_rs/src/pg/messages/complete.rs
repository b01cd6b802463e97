//! ParseComplete, BindComplete and CloseComplete (B) messages: bodiless acknowledgements.

use super::empty_message;

empty_message!(
    /// `1`: a Parse succeeded.
    ParseComplete, b'1', "parsecomplete"
);
empty_message!(
    /// `2`: a Bind succeeded.
    BindComplete, b'2', "bindcomplete"
);
empty_message!(
    /// `3`: a Close succeeded.
    CloseComplete, b'3', "closecomplete"
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::messages::test_util::round_trip;

    #[test]
    fn round_trips() {
        assert_eq!(round_trip(&ParseComplete), ParseComplete);
        assert_eq!(round_trip(&BindComplete), BindComplete);
        assert_eq!(round_trip(&CloseComplete), CloseComplete);
    }
}
