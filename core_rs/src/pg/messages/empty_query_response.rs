//! EmptyQueryResponse (B) message: the query string was empty.

use super::empty_message;

empty_message!(
    /// `I`: stands in for CommandComplete when the query was empty.
    EmptyQueryResponse, b'I', "emptyqueryresponse"
);
