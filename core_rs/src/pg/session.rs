//! The relay-phase state machine of one proxied session, both directions.
//!
//! Like a pooler (pgdog, pgcat, odyssey), the session keeps a FIFO of the client's outstanding
//! requests and matches each server response to the request at its head. Completed requests come
//! out as [`Statement`]s: the units of the audit trail.
//!
//! - Simple `Query`: one entry that completes at ReadyForQuery, accumulating the command tags.
//! - Extended protocol: `Parse`, `Bind`, `Describe`, `Close` and `Sync` each expect their own
//!   answer; `Execute` completes at CommandComplete / EmptyQueryResponse / PortalSuspended. After an
//!   ErrorResponse the server skips everything up to the next `Sync`: the failed request is
//!   reported as an error, and every later `Execute` of the batch as skipped.
//! - COPY: the server ignores `Sync`/`Flush` while in copy-in mode (libpq sends a second `Sync`
//!   after CopyDone), so those are dropped from the FIFO.
//! - NoticeResponse, NotificationResponse and ParameterStatus may arrive at any time and consume
//!   nothing.
//!
//! Masking (when a [`Masker`] is set): DataRows are masked by the plan of their result shape (the
//! RowDescription of the simple query, or the one remembered per prepared statement and portal from
//! Describe, with Bind's result formats); COPY TO STDOUT data, NoticeResponse and ErrorResponse
//! are masked; recorded SQL, parameters and errors are masked. When a plan needs catalog names the
//! session does not have, it pauses before the row: [`Session::catalog_request`] says what to look
//! up, [`Session::resolve`] supplies it, and feeding resumes with the held bytes.
//!
//! Policy (when a [`Policy`] is set, see [`super::policy`]): a denied Query, Parse or FunctionCall
//! is not forwarded; a `Request::Denied` entry takes its place in the FIFO and, when it reaches
//! the head, its answer (the ErrorResponse, then for Query and FunctionCall a ReadyForQuery with
//! the server's latest transaction status) is inserted into the server stream right after the
//! answer to the request before it — or returned at once by [`Session::take_reply`] when nothing
//! was pending. After a denied Parse the client's messages up to the next Sync are dropped (the
//! server answers that Sync). Inside an extended batch the server already skips (it failed an
//! earlier message), denials are silent: one error per batch, as from PostgreSQL.
//!
//! Previews (when [`Session::set_preview`] turned them on): each Query and Execute keeps the
//! first rows of its first result set that has rows, as forwarded to the client (after masking),
//! with the column names; see [`super::preview`]. A multi-statement Query previews only that first
//! result set; COPY TO STDOUT data is never previewed (its rows are only counted). Past the last
//! row a preview keeps, a DataRow costs one more branch.
//!
//! Holding (when the check says [`Verdict::hold`](super::Verdict)): the held Query, Parse, Bind
//! or FunctionCall is not forwarded, and from it on every byte the client sends is kept, in
//! order, unprocessed (bounded at twice the message size guard), while the server direction
//! flows on. [`Session::release`] then processes the held message as allowed and [`Session::reject`]
//! answers it like a denial (for a Parse or Bind: the rest of its batch dropped up to the Sync);
//! either way what followed it is fed through the client path again, checked as usual (it may be
//! denied, or held in turn). For Parse and Bind the unit held is the rest of the batch from that
//! message on: the messages of the batch before it were already forwarded (the server waits for
//! the Sync). After a release, Binds of the released statement kept with it up to the next Sync
//! are not checked again; one the client sends after the release is. A Terminate while holding
//! drops the held bytes and is forwarded.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};

use super::error::ProtocolError;
use super::frame::{frame_len, Forward, Frame, Step, Stream, HEADER_LEN};
use super::mask::{CatalogRequest, CopyShape, CopyState, Masking, Plan, TableInfo, TypeKind};
use super::messages::bind::{format_of, Bind, FORMAT_TEXT};
use super::messages::close::Close;
use super::messages::command_complete::CommandComplete;
use super::messages::complete::{BindComplete, CloseComplete, ParseComplete};
use super::messages::copy::{CopyData, CopyDirection, CopyDone, CopyFail, CopyResponse};
use super::messages::data_row::DataRow;
use super::messages::describe::{Describe, Target};
use super::messages::empty_query_response::EmptyQueryResponse;
use super::messages::error_notice::{
    ErrorResponse, FIELD_CODE, FIELD_MESSAGE, FIELD_SEVERITY, FIELD_SEVERITY_NONLOCALIZED,
};
use super::messages::execute::Execute;
use super::messages::function_call::FunctionCall;
use super::messages::no_data::NoData;
use super::messages::parameter_status::ParameterStatus;
use super::messages::parse::Parse;
use super::messages::portal_suspended::PortalSuspended;
use super::messages::query::Query;
use super::messages::ready_for_query::ReadyForQuery;
use super::messages::row_description::RowDescription;
use super::messages::sync_flush_terminate::{Flush, Sync, Terminate};
use super::messages::{FromBytes, Message};
use super::policy::{denial, ready_for_query, Decision, Policy};
use super::preview::{Preview, PreviewBuilder, PreviewLimits};
use crate::mask::Masker;

/// Frontend message types valid after authentication.
const FRONTEND_TYPES: &[u8] = b"QPBEDCSHXdcfF";

/// A Terminate message.
const TERMINATE: [u8; HEADER_LEN] = [b'X', 0, 0, 0, 4];

/// What kind of message is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldKind {
    Query,
    Parse,
    Bind,
    FunctionCall,
}

impl HeldKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Parse => "parse",
            Self::Bind => "bind",
            Self::FunctionCall => "function",
        }
    }
}

/// The message a session holds for a decision (see [`Session::release`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub kind: HeldKind,
    /// The SQL of a Query or Parse; for a Bind, the text of its statement when this session
    /// parsed it.
    pub sql: Option<Bytes>,
    /// The statement name of a Parse or Bind.
    pub name: Option<Bytes>,
    /// The classes the check gave (a Parse keeps them, as when allowed).
    mask: Option<u32>,
}

/// What kind of request a [`Statement`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    /// A simple Query message (may hold several statements).
    Query,
    /// An extended-protocol Execute of a portal.
    Execute,
    /// A Parse the server rejected.
    Parse,
    /// A FunctionCall.
    Function,
}

impl StatementKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Execute => "execute",
            Self::Parse => "parse",
            Self::Function => "function",
        }
    }
}

/// How the server answered a [`Statement`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementStatus {
    Ok,
    /// The server returned ErrorResponse.
    Error,
    /// Not run: an earlier message of the same extended-protocol batch failed.
    Skipped,
    /// PortalSuspended: the row limit was reached, more rows can be fetched.
    Suspended,
}

impl StatementStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Skipped => "skipped",
            Self::Suspended => "suspended",
        }
    }
}

/// One statement as the server answered it: the unit of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub kind: StatementKind,
    /// SQL text (for Execute: the text of the prepared statement the portal was bound from).
    pub sql: String,
    /// Prepared statement name for Execute / Parse ("" = unnamed).
    pub statement_name: Option<String>,
    /// Portal name for Execute.
    pub portal: Option<String>,
    /// Parameters as text: binary ones as `\x<hex>`, NULL as `None`.
    pub params: Option<Vec<Option<String>>>,
    /// Command tags in order ("" for an empty query).
    pub tags: Vec<String>,
    /// Rows affected or returned, summed over the tags (DataRows counted when a tag has no count).
    pub rows: u64,
    pub status: StatementStatus,
    /// (SQLSTATE, message) of the ErrorResponse.
    pub error: Option<(String, String)>,
    pub started_ns: i64,
    pub ended_ns: i64,
    /// The first rows of the first result set that had rows, as forwarded (None: no rows, or
    /// previews are off).
    pub preview: Option<Preview>,
}

/// A prepared statement as the client defined it.
#[derive(Debug)]
pub struct PreparedStatement {
    pub name: Bytes,
    pub sql: Bytes,
    /// Body of the RowDescription returned by a Describe of this statement.
    pub row_description: OnceLock<Bytes>,
    /// The statement's classes when a policy checked its Parse: each Bind is checked again
    /// against the classes allowed at that moment (a time window may have closed since).
    pub mask: Option<u32>,
}

/// A portal as the client bound it.
#[derive(Debug)]
pub struct Portal {
    pub name: Bytes,
    pub statement_name: Bytes,
    /// The statement bound, when the client prepared it through this session.
    pub statement: Option<Arc<PreparedStatement>>,
    pub param_formats: Vec<i16>,
    pub params: Vec<Option<Bytes>>,
    pub result_formats: Vec<i16>,
    /// Body of the RowDescription returned by a Describe of this portal.
    pub row_description: OnceLock<Bytes>,
}

impl Portal {
    /// A portal this session did not bind (a cursor opened with DECLARE).
    fn unbound(name: Bytes) -> Self {
        Self {
            name,
            statement_name: Bytes::new(),
            statement: None,
            param_formats: Vec::new(),
            params: Vec::new(),
            result_formats: Vec::new(),
            row_description: OnceLock::new(),
        }
    }

    /// The RowDescription body that describes this portal's rows, when known.
    pub fn row_description(&self) -> Option<&Bytes> {
        self.row_description.get().or_else(|| self.statement.as_ref().and_then(|s| s.row_description.get()))
    }
}

/// How the rows of the current result set are masked.
#[derive(Debug, Clone)]
enum RowsPlan {
    /// No RowDescription is known for them: every value is scanned as text.
    Unknown,
    /// Nothing to do.
    Nothing,
    Plan(Arc<Plan>),
}

/// A request in flight: the part of the audit record built from the client side.
#[derive(Debug)]
struct Running {
    kind: StatementKind,
    sql: Bytes,
    statement_name: Option<Bytes>,
    portal_name: Option<Bytes>,
    portal: Option<Arc<Portal>>,
    params: Option<Vec<Option<String>>>,
    tags: Vec<String>,
    rows: u64,
    error: Option<(String, String)>,
    started_ns: i64,
    /// RowDescription body of the current result set of a simple query (for masking).
    row_description: Option<Bytes>,
    /// COPY TO STDOUT responses seen so far (which COPY of a multi-statement query is running).
    copies: usize,
    /// The preview of its rows, from the first DataRow on.
    preview: Option<Box<PreviewBuilder>>,
}

impl Running {
    fn new(kind: StatementKind, sql: Bytes, started_ns: i64) -> Box<Self> {
        Box::new(Self {
            kind,
            sql,
            statement_name: None,
            portal_name: None,
            portal: None,
            params: None,
            tags: Vec::new(),
            rows: 0,
            error: None,
            started_ns,
            row_description: None,
            copies: 0,
            preview: None,
        })
    }

    /// An Execute of `portal_name` (the portal is `None` when not bound through this session,
    /// e.g. a cursor opened with DECLARE).
    fn execute(portal_name: Bytes, portal: Option<Arc<Portal>>, started_ns: i64) -> Box<Self> {
        let statement = portal.as_ref().and_then(|p| p.statement.as_ref());
        let mut r = Self::new(
            StatementKind::Execute,
            statement.map(|s| s.sql.clone()).unwrap_or_default(),
            started_ns,
        );
        r.statement_name = portal.as_ref().map(|p| p.statement_name.clone());
        r.params =
            Some(portal.as_ref().map(|p| render_params(&p.params, &p.param_formats)).unwrap_or_default());
        r.portal_name = Some(portal_name);
        r.portal = portal;
        r
    }

    fn into_statement(self, status: StatementStatus, ended_ns: i64) -> Statement {
        let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        Statement {
            kind: self.kind,
            sql: text(&self.sql),
            statement_name: self.statement_name.as_ref().map(text),
            portal: self.portal_name.as_ref().map(text),
            params: self.params,
            tags: self.tags,
            rows: self.rows,
            status: if self.error.is_some() { StatementStatus::Error } else { status },
            error: self.error,
            started_ns: self.started_ns,
            ended_ns,
            preview: self.preview.map(|p| p.finish()),
        }
    }
}

/// The classes of the statement a portal was bound from, when a policy checked its Parse.
fn portal_mask(portal: Option<&Arc<Portal>>) -> Option<u32> {
    portal.and_then(|p| p.statement.as_ref()).and_then(|s| s.mask)
}

/// Renders parameter values as text: text format as UTF-8 (lossy), binary as `\x<hex>`.
fn render_params(values: &[Option<Bytes>], formats: &[i16]) -> Vec<Option<String>> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_ref().map(|v| {
                if format_of(formats, i) == FORMAT_TEXT {
                    String::from_utf8_lossy(v).into_owned()
                } else {
                    let mut s = String::with_capacity(2 + 2 * v.len());
                    s.push_str("\\x");
                    for b in v.iter() {
                        let _ = write!(s, "{b:02x}");
                    }
                    s
                }
            })
        })
        .collect()
}

/// Keeps a zero-copy slice of a read when it is a large part of it; copies small slices so that a
/// long-lived entry (a prepared statement) does not pin a whole socket read in memory.
fn retain(slice: Bytes, chunk_len: usize) -> Bytes {
    if slice.len().saturating_mul(4) >= chunk_len {
        slice
    } else {
        Bytes::copy_from_slice(&slice)
    }
}

/// Appends the answer to a denied message.
fn answer_denied(out: &mut BytesMut, denied: &Denied, tx_status: u8) {
    out.extend_from_slice(&denied.error);
    if denied.ready {
        out.extend_from_slice(&ready_for_query(tx_status));
    }
}

/// What a Describe refers to.
#[derive(Debug)]
enum Described {
    Statement(Option<Arc<PreparedStatement>>),
    Portal(Option<Arc<Portal>>),
}

/// One entry of the FIFO of outstanding client requests.
#[derive(Debug)]
enum Request {
    Query(Box<Running>),
    FunctionCall(Box<Running>),
    Execute(Box<Running>),
    /// The statement parsed, the one of the same name it replaced (the server keeps that one when
    /// the Parse fails or is skipped), when it was sent.
    Parse(Arc<PreparedStatement>, Option<Arc<PreparedStatement>>, i64),
    Bind(Arc<Portal>, i64),
    Describe(Described, i64),
    /// A Describe the gateway added before an Execute of a portal it had no shape for (column
    /// rules need one): its answer is kept from the client.
    InjectedDescribe(Arc<Portal>, i64),
    Close(i64),
    Sync,
    /// Not a request: where the client ended a copy-in stream (CopyDone / CopyFail).
    CopyEnd,
    /// A message the policy denied: its answer, sent to the client when it reaches the head.
    Denied(Box<Denied>),
}

/// The answer to a denied message.
#[derive(Debug)]
struct Denied {
    /// ErrorResponse (from the check).
    error: Bytes,
    /// Followed by ReadyForQuery (Query, FunctionCall), or not (Parse: the client's Sync is).
    ready: bool,
}

impl Request {
    /// Requests that end at ReadyForQuery.
    fn ends_at_ready(&self, discarding: bool) -> bool {
        match self {
            Self::Sync => true,
            Self::Query(_) | Self::FunctionCall(_) => !discarding,
            _ => false,
        }
    }

    /// The audit record of a request the server failed: the request itself for Execute, Query
    /// and FunctionCall; for Bind, Describe and Close the portal/statement it refers to.
    fn into_running(self) -> Option<Box<Running>> {
        match self {
            Self::Query(r) | Self::FunctionCall(r) | Self::Execute(r) => Some(r),
            Self::Bind(portal, started) => Some(Running::execute(portal.name.clone(), Some(portal), started)),
            Self::Describe(Described::Portal(Some(portal)), started)
            | Self::InjectedDescribe(portal, started) => {
                Some(Running::execute(portal.name.clone(), Some(portal), started))
            }
            Self::Describe(Described::Statement(Some(s)), started) => {
                let mut r = Running::new(StatementKind::Execute, s.sql.clone(), started);
                r.statement_name = Some(s.name.clone());
                Some(r)
            }
            Self::Describe(_, started) | Self::Close(started) => {
                Some(Running::new(StatementKind::Execute, Bytes::new(), started))
            }
            Self::Parse(..) | Self::Sync | Self::CopyEnd | Self::Denied(_) => None,
        }
    }
}

/// Protocol state shared by both directions.
struct State {
    fifo: VecDeque<Request>,
    /// Number of [`Request::CopyEnd`] markers in the FIFO (they are not pending requests).
    markers: usize,
    statements: HashMap<Bytes, Arc<PreparedStatement>>,
    portals: HashMap<Bytes, Arc<Portal>>,
    tx_status: u8,
    in_copy: bool,
    /// The server is in copy-in mode and the client has not ended the stream yet.
    client_copy_in: bool,
    /// An extended-protocol error: the server skips everything up to the next Sync.
    discarding: bool,
    /// DataRows since the last command tag.
    rows: u64,
    terminated: bool,
    done: Vec<Statement>,
    masking: Option<Masking>,
    /// Plan of the rows of the current result set, once known.
    rows_plan: Option<RowsPlan>,
    /// The COPY TO STDOUT in progress (when masking).
    copy: Option<CopyState>,
    /// Names needed before the server stream can go on.
    paused: Option<CatalogRequest>,
    policy: Option<Policy>,
    /// Classes the session may run without asking the check (see [`Policy`]).
    allow_mask: u32,
    /// A Parse was denied: the client's messages are dropped up to the next Sync.
    client_skip: bool,
    /// Answers to denied messages that reached the head of the FIFO: they follow the server
    /// frame being processed.
    synthetic: BytesMut,
    /// Answers to denied messages sent while nothing was pending: for the client at once.
    reply: BytesMut,
    /// Server parameters whose values the gateway relies on (name, accepted values; ASCII
    /// case-insensitive): a ParameterStatus with another value trips the session.
    param_guard: Vec<(Vec<u8>, Vec<Vec<u8>>)>,
    /// The first guarded parameter the server reported with a value not accepted (`name=value`).
    tripped: Option<String>,
    /// The message held for a decision (its bytes and what followed are in `Session`).
    held: Option<Held>,
    /// The decision on the held message, for the first frame fed again (and its classes).
    resume: Option<(Decision, Option<u32>)>,
    /// A released Parse or Bind: Binds of this statement (name, and the prepared statement when
    /// this session parsed it) kept with it are not checked again up to the client's next Sync
    /// (set while the held bytes are fed again, cleared after).
    released: Option<(Bytes, Option<Arc<PreparedStatement>>)>,
    /// Write-ahead audit: statements with a class in this mask (or whose classes are unknown) are
    /// noted in `intents` as they are forwarded (0: off).
    wal_mask: u32,
    /// Classes whose effects stay inside the transaction (reads, plain writes): inside an explicit
    /// transaction block the intents of such statements may be recorded while they run; any other
    /// statement is a barrier (it may end the transaction).
    wal_contained: u32,
    /// Statements forwarded by the last feed that must be durably recorded (see
    /// [`Session::take_intents`]).
    intents: Vec<Statement>,
    /// Whether one of `intents` must be durable before the feed's bytes go upstream.
    intents_strict: bool,
    /// Whether the last feed may end a transaction (or has effects outside it): a statement with
    /// classes other than read and `wal_deferrable`, or unknown ones, or a FunctionCall.
    wal_barrier: bool,
    /// The session is certainly inside an explicit transaction block: the last ReadyForQuery said
    /// so with nothing pending, and the client sent no barrier since.
    in_block: bool,
    /// How much of each result previews keep (rows 0: off).
    preview: PreviewLimits,
    /// The next DataRow may go into the preview of the request at the head of the FIFO: set when
    /// previews are on and a result set ends, cleared once the current one is previewed in full.
    preview_armed: bool,
}

/// Protocol state of one proxied session after authentication, both directions.
pub struct Session {
    max_message_size: usize,
    client: Stream,
    server: Stream,
    /// Server bytes not processed yet while paused.
    held: BytesMut,
    /// Client bytes from the held message on, while a statement is held.
    client_held: BytesMut,
    /// Offset in `client_held` of the next frame not vetted yet.
    client_scan: usize,
    state: State,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("pending", &self.pending())
            .field("tx_status", &char::from(self.state.tx_status))
            .field("in_copy", &self.state.in_copy)
            .finish_non_exhaustive()
    }
}

fn check_frontend_type(code: u8) -> Result<(), ProtocolError> {
    if FRONTEND_TYPES.contains(&code) {
        Ok(())
    } else {
        Err(ProtocolError::InvalidFrontendType(code))
    }
}

impl Session {
    /// A session guarding each message (length word included) at `max_message_size` bytes.
    pub fn new(max_message_size: usize) -> Self {
        Self {
            max_message_size,
            client: Stream::default(),
            server: Stream::default(),
            held: BytesMut::new(),
            client_held: BytesMut::new(),
            client_scan: 0,
            state: State {
                fifo: VecDeque::new(),
                markers: 0,
                statements: HashMap::new(),
                portals: HashMap::new(),
                tx_status: b'I',
                in_copy: false,
                client_copy_in: false,
                discarding: false,
                rows: 0,
                terminated: false,
                done: Vec::new(),
                masking: None,
                rows_plan: None,
                copy: None,
                paused: None,
                policy: None,
                allow_mask: 0,
                client_skip: false,
                synthetic: BytesMut::new(),
                reply: BytesMut::new(),
                param_guard: Vec::new(),
                tripped: None,
                held: None,
                resume: None,
                released: None,
                wal_mask: 0,
                wal_contained: 0,
                intents: Vec::new(),
                intents_strict: false,
                wal_barrier: false,
                in_block: false,
                preview: PreviewLimits::default(),
                preview_armed: false,
            },
        }
    }

    /// Masks what flows to the client and what is recorded with `masker` (`None`: no masking).
    pub fn set_masker(&mut self, masker: Option<Arc<Masker>>) {
        self.state.masking = masker.map(Masking::new);
        self.state.rows_plan = None;
    }

    /// Keeps a preview of the first `rows` rows of each statement's result (0: off, the default),
    /// each value and column name cut at `chars` characters (see [`super::preview`]).
    pub fn set_preview(&mut self, rows: usize, chars: usize) {
        self.state.preview = PreviewLimits { rows, chars: chars.max(1) };
        self.state.preview_armed = rows > 0;
    }

    /// Checks Query, Parse and FunctionCall messages with `policy` (`None`: forward everything).
    pub fn set_policy(&mut self, policy: Option<Policy>, allow_mask: u32) {
        self.state.policy = policy;
        self.state.allow_mask = allow_mask;
    }

    /// Write-ahead audit: every Query or Execute with a class in `mask` (or with unknown classes,
    /// e.g. no policy classified it) and every FunctionCall is noted as an intent as it is
    /// forwarded (0: off). The gateway records intents durably before it writes the bytes that
    /// carry them upstream.
    ///
    /// Inside an explicit transaction block, statements whose classes are all in `contained`
    /// (reads and plain writes: their effects are invisible until the transaction commits, and
    /// gone if the connection drops) are not strict: they may run while their intents are
    /// committed. Any other statement (COMMIT is one) is a barrier the gateway holds until every
    /// intent before it is durable.
    pub fn set_write_ahead(&mut self, mask: u32, contained: u32) {
        self.state.wal_mask = mask;
        self.state.wal_contained = contained;
    }

    /// The statements noted for write-ahead since the last call, in order (masked like the
    /// records of [`Statement`]s; `tags`, `rows` and `error` empty, `ended_ns` = `started_ns`),
    /// whether one of them is strict (the bytes must wait for them), and whether the client sent
    /// a barrier (the bytes must wait for every intent still in flight).
    pub fn take_intents(&mut self) -> (Vec<Statement>, bool, bool) {
        let state = &mut self.state;
        let strict = std::mem::take(&mut state.intents_strict);
        let barrier = std::mem::take(&mut state.wal_barrier);
        (std::mem::take(&mut state.intents), strict, barrier)
    }

    /// Whether a policy is set.
    pub fn has_policy(&self) -> bool {
        self.state.policy.is_some()
    }

    /// Classes the session may run without asking the check.
    pub fn allow_mask(&self) -> u32 {
        self.state.allow_mask
    }

    pub fn set_allow_mask(&mut self, allow_mask: u32) {
        self.state.allow_mask = allow_mask;
    }

    /// Guards server parameters: each `(name, accepted values)` (ASCII case-insensitive). When the
    /// server reports a guarded parameter with a value not accepted (a function changed
    /// `standard_conforming_strings`, say), [`Self::tripped`] says which; the caller must end the
    /// session, since its statements are no longer parsed the way the server parses them.
    pub fn set_param_guard(&mut self, guard: Vec<(Vec<u8>, Vec<Vec<u8>>)>) {
        self.state.param_guard = guard;
    }

    /// The guarded parameter the server changed to a value not accepted (`name=value`).
    pub fn tripped(&self) -> Option<&str> {
        self.state.tripped.as_deref()
    }

    /// Answers to denied messages that must go to the client now (nothing was pending before
    /// them); call after each [`Self::feed_client`].
    pub fn take_reply(&mut self) -> Option<Bytes> {
        let reply = &mut self.state.reply;
        (!reply.is_empty()).then(|| reply.split().freeze())
    }

    /// Whether a masker is set.
    pub fn masking(&self) -> bool {
        self.state.masking.is_some()
    }

    /// The names the session waits for (the server stream is paused until [`Self::resolve`]).
    pub fn catalog_request(&self) -> Option<&CatalogRequest> {
        self.state.paused.as_ref()
    }

    /// Supplies looked-up names and resumes: feed the server side again (an empty read is fine)
    /// to process what was held. Requested OIDs missing from `tables` / `types` are taken as
    /// dropped (no column rule applies; their values are treated as not text). For a COPY, `copy`
    /// is its shape, or `None` when it could not be described.
    pub fn resolve(
        &mut self,
        tables: Vec<(u32, Option<TableInfo>)>,
        types: Vec<(u32, char)>,
        copy: Option<CopyShape>,
    ) {
        let state = &mut self.state;
        let Some(request) = state.paused.take() else { return };
        let Some(m) = state.masking.as_mut() else { return };
        let answered: Vec<u32> = tables.iter().map(|(oid, _)| *oid).collect();
        for (oid, info) in tables {
            m.catalog.add_table(oid, info);
        }
        for (oid, category) in types {
            m.catalog.add_type(oid, TypeKind::from_category(category));
        }
        for oid in &request.tables {
            if !answered.contains(oid) {
                m.catalog.add_table(*oid, None);
            }
        }
        for oid in &request.types {
            if m.catalog.type_kind(*oid).is_none() {
                m.catalog.add_type(*oid, TypeKind::Other);
            }
        }
        if let Some(st) = state.copy.as_mut() {
            st.described = true;
            if let Some(shape) = copy {
                let plan = m.copy_plan(&shape);
                st.set_shape(shape, plan);
            }
        }
    }

    /// Values masked on the way to the client in this session, per counter name.
    pub fn mask_counts(&self) -> Vec<(String, u64)> {
        match &self.state.masking {
            Some(m) => m
                .counts
                .named(m.masker.counter_names())
                .into_iter()
                .map(|(n, c)| (n.to_string(), c))
                .collect(),
            None => Vec::new(),
        }
    }

    /// Feeds one read from the client; returns what to forward upstream and whether the client
    /// sent Terminate. `now_ns` stamps the requests it carries. With a policy, what to answer the
    /// client directly comes from [`Self::take_reply`].
    ///
    /// While a statement is held ([`Self::held`]) the read is kept and nothing is forwarded, except
    /// that a Terminate from the client drops the held bytes and is forwarded.
    pub fn feed_client(&mut self, data: &Bytes, now_ns: i64) -> Result<(Forward, bool), ProtocolError> {
        self.state.terminated = false;
        if self.state.held.is_some() {
            if self.hold_more(data)? {
                return Ok((Forward::Rewritten(Bytes::from_static(&TERMINATE)), true));
            }
            return Ok((Forward::Split { head: Bytes::new(), range: 0..0 }, false));
        }
        let state = &mut self.state;
        let (forward, rest) = self
            .client
            .feed(data, self.max_message_size, check_frontend_type, |f| state.on_client(&f, now_ns))?;
        if let Some(rest) = rest {
            if self.start_hold(&rest)? {
                let mut out = BytesMut::from(&forward.to_bytes(data)[..]);
                out.extend_from_slice(&TERMINATE);
                return Ok((Forward::Rewritten(out.freeze()), true));
            }
        }
        Ok((forward, self.state.terminated))
    }

    /// The message held for a decision, if any: nothing the client sent from it on has been
    /// forwarded. Decide with [`Self::release`] or [`Self::reject`].
    pub fn held(&self) -> Option<&Held> {
        self.state.held.as_ref()
    }

    /// Client bytes kept while holding (the held message included).
    pub fn held_bytes(&self) -> usize {
        self.client_held.len()
    }

    /// What the gateway needs to describe a held statement: whether its batch is complete (a
    /// Query or FunctionCall always is; a Parse or Bind once the Sync that ends its batch is in)
    /// and every Bind of the held statement received so far in that batch, in order (a held Bind
    /// is its own first): once released, they all run. A Bind that does not decode is skipped: the
    /// server will refuse it once released.
    pub fn held_batch(&self) -> (bool, Vec<Bind>) {
        let Some(held) = self.state.held.as_ref() else { return (false, Vec::new()) };
        let mut complete = matches!(held.kind, HeldKind::Query | HeldKind::FunctionCall);
        let target = held.name.clone().unwrap_or_default();
        let mut binds = Vec::new();
        let mut at = 0usize;
        while at < self.client_scan {
            let Some(header) = self
                .client_held
                .get(at..at.saturating_add(HEADER_LEN))
                .and_then(|h| <[u8; HEADER_LEN]>::try_from(h).ok())
            else {
                break;
            };
            let Ok(len) = frame_len(header, self.max_message_size) else { break };
            let end = at.saturating_add(len);
            let Some(frame) = self.client_held.get(at..end) else { break };
            match header[0] {
                Sync::CODE => {
                    complete = true;
                    break;
                }
                Bind::CODE => {
                    let body = Bytes::copy_from_slice(frame.get(HEADER_LEN..).unwrap_or_default());
                    if let Ok(bind) = Bind::from_bytes(&body) {
                        if bind.statement == target {
                            binds.push(bind);
                        }
                    }
                }
                _ => {}
            }
            at = end;
        }
        (complete, binds)
    }

    /// Lets the held message go on as if the check had allowed it (a Parse keeps the classes the
    /// check gave; Binds of its statement up to the next Sync are not checked again), then
    /// processes what the client sent after it: returns what to forward upstream and whether the
    /// client sent Terminate, like [`Self::feed_client`] (answers for the client from
    /// [`Self::take_reply`]). Does nothing when nothing is held.
    pub fn release(&mut self, now_ns: i64) -> Result<(Bytes, bool), ProtocolError> {
        self.decide(Decision::Forward, now_ns)
    }

    /// Answers the held message with `error` (an encoded ErrorResponse, optionally after
    /// NoticeResponses; anything else answers with the check-failed error) like a denial at its
    /// place in the response stream, then goes on as [`Self::release`] does.
    pub fn reject(&mut self, error: Bytes, now_ns: i64) -> Result<(Bytes, bool), ProtocolError> {
        self.decide(denial(error), now_ns)
    }

    fn decide(&mut self, decision: Decision, now_ns: i64) -> Result<(Bytes, bool), ProtocolError> {
        let Some(held) = self.state.held.take() else { return Ok((Bytes::new(), false)) };
        let input = self.client_held.split().freeze();
        self.client_scan = 0;
        let state = &mut self.state;
        state.terminated = false;
        state.resume = Some((decision, held.mask));
        let result = self
            .client
            .feed(&input, self.max_message_size, check_frontend_type, |f| state.on_client(&f, now_ns));
        state.resume = None;
        // Only the Binds kept with the held message ride on its decision: once its bytes are fed,
        // a Bind the client sends later (its Sync may still be to come) is checked again.
        state.released = None;
        let (forward, rest) = result?;
        let mut out = forward.to_bytes(&input);
        if let Some(rest) = rest {
            if self.start_hold(&rest)? {
                let mut with = BytesMut::from(&out[..]);
                with.extend_from_slice(&TERMINATE);
                out = with.freeze();
            }
        }
        Ok((out, self.state.terminated))
    }

    /// The client stream paused at a message the check holds: keeps it and what follows.
    /// `Ok(true)` when the client sent Terminate after it (the hold is dropped).
    fn start_hold(&mut self, rest: &[u8]) -> Result<bool, ProtocolError> {
        self.client_held.clear();
        self.client_scan = 0;
        self.hold_more(rest)
    }

    /// Keeps client bytes while holding, vetting each frame as it completes. `Ok(true)` when
    /// one is a Terminate: the client leaves, the held statement and what followed are dropped.
    fn hold_more(&mut self, data: &[u8]) -> Result<bool, ProtocolError> {
        let total = self.client_held.len().saturating_add(data.len());
        if total > self.max_message_size.saturating_mul(2) {
            return Err(ProtocolError::ClientHeldTooLong(total));
        }
        self.client_held.extend_from_slice(data);
        let held = &self.client_held;
        while let Some(header) = held
            .get(self.client_scan..self.client_scan.saturating_add(HEADER_LEN))
            .and_then(|h| <[u8; HEADER_LEN]>::try_from(h).ok())
        {
            check_frontend_type(header[0])?;
            let len = frame_len(header, self.max_message_size)?;
            let end = self.client_scan.saturating_add(len);
            let Some(frame) = held.get(self.client_scan..end) else { break };
            if header[0] == Terminate::CODE {
                Terminate::from_bytes(&Bytes::copy_from_slice(frame.get(HEADER_LEN..).unwrap_or_default()))?;
                self.client_held.clear();
                self.client_scan = 0;
                self.state.held = None;
                self.state.terminated = true;
                return Ok(true);
            }
            self.client_scan = end;
        }
        if let Some(&code) = held.get(self.client_scan) {
            check_frontend_type(code)?;
        }
        Ok(false)
    }

    /// Feeds one read from the server; returns what to forward to the client and the statements
    /// this read completed. `now_ns` stamps their end.
    pub fn feed_server(
        &mut self,
        data: &Bytes,
        now_ns: i64,
    ) -> Result<(Forward, Vec<Statement>), ProtocolError> {
        let state = &mut self.state;
        state.done.clear();
        if state.paused.is_some() {
            // the gateway stops reading while paused; a bounded slack for what was in flight
            if self.held.len() + data.len() > self.max_message_size.saturating_mul(2) {
                return Err(ProtocolError::HeldTooLong(self.held.len() + data.len()));
            }
            self.held.extend_from_slice(data);
            return Ok((Forward::Split { head: Bytes::new(), range: 0..0 }, Vec::new()));
        }
        let (input, rebased) = if self.held.is_empty() {
            (data.clone(), false)
        } else {
            self.held.extend_from_slice(data);
            (self.held.split().freeze(), true)
        };
        let (forward, rest) = self.server.feed(
            &input,
            self.max_message_size,
            |_| Ok(()),
            |f| {
                let step = state.on_server(&f, now_ns)?;
                Ok(state.with_synthetic(step, &f))
            },
        )?;
        if let Some(rest) = rest {
            self.held.extend_from_slice(&rest);
        }
        let forward = if rebased { Forward::Rewritten(forward.to_bytes(&input)) } else { forward };
        Ok((forward, std::mem::take(&mut state.done)))
    }

    /// Transaction status from the last ReadyForQuery: `I`, `T` or `E`.
    pub fn tx_status(&self) -> char {
        char::from(self.state.tx_status)
    }

    /// Requests sent by the client that the server has not finished answering.
    pub fn pending(&self) -> usize {
        self.state.fifo.len().saturating_sub(self.state.markers)
    }

    /// Whether a COPY is in progress.
    pub fn in_copy(&self) -> bool {
        self.state.in_copy
    }

    /// Number of prepared statements and portals remembered (for memory bounds).
    pub fn tracked_names(&self) -> (usize, usize) {
        (self.state.statements.len(), self.state.portals.len())
    }
}

impl State {
    fn push(&mut self, request: Request) {
        if matches!(request, Request::CopyEnd) {
            if self.fifo.is_empty() {
                return;
            }
            self.markers += 1;
        }
        self.fifo.push_back(request);
    }

    /// Pops the head request, then any markers and denials that reach the head. A denial's
    /// answer is queued for the client, unless the server skips its batch (it failed an earlier
    /// message of it, and would ignore this one).
    fn pop(&mut self) -> Option<Request> {
        let head = self.fifo.pop_front();
        if matches!(head, Some(Request::Sync)) {
            self.discarding = false;
        }
        loop {
            match self.fifo.front() {
                Some(Request::CopyEnd) => {
                    self.fifo.pop_front();
                    self.markers = self.markers.saturating_sub(1);
                }
                Some(Request::Denied(_)) => {
                    if let Some(Request::Denied(d)) = self.fifo.pop_front() {
                        if !self.discarding {
                            let tx_status = self.tx_status;
                            answer_denied(&mut self.synthetic, &d, tx_status);
                        }
                    }
                }
                _ => break,
            }
        }
        head
    }

    /// A message the policy denied, in place of the request: answered at once when nothing is
    /// pending, else when the requests before it are answered.
    fn deny(&mut self, error: Bytes, ready: bool) {
        let denied = Denied { error, ready };
        if !self.fifo.is_empty() {
            self.fifo.push_back(Request::Denied(Box::new(denied)));
        } else if !self.discarding {
            answer_denied(&mut self.reply, &denied, self.tx_status);
        }
    }

    /// Drops a denied client message, answering it in its place: a Query or FunctionCall with
    /// `error` + ReadyForQuery; a Parse or Bind (`in_batch`) with `error`, and the rest of its
    /// extended-protocol batch is dropped up to its Sync, as the server does after an error.
    fn refuse(&mut self, error: Bytes, in_batch: bool) -> Step {
        self.deny(error, !in_batch);
        if in_batch {
            self.client_skip = true;
        }
        Step::Replace(Bytes::new())
    }

    /// The server frame's step, followed by the answers to denials it brought to the head.
    fn with_synthetic(&mut self, step: Step, f: &Frame<'_>) -> Step {
        if self.synthetic.is_empty() {
            return step;
        }
        let mut out = match step {
            Step::Pause => return Step::Pause,
            Step::Keep => BytesMut::from(f.bytes()),
            Step::Replace(b) => BytesMut::from(&b[..]),
        };
        out.extend_from_slice(&self.synthetic);
        self.synthetic.clear();
        Step::Replace(out.freeze())
    }

    /// Asks the policy about a Query or Parse: the decision, and the statement's classes when a
    /// policy knows them.
    ///
    /// Checked even while the client is in COPY-in: a bad row makes the server leave the copy on
    /// its own and run what the client sent after it, before the gateway sees its ErrorResponse.
    fn check_statement(&mut self, sql: &[u8], name: Option<&[u8]>) -> (Decision, Option<u32>) {
        let allow_mask = self.allow_mask;
        match self.policy.as_mut() {
            Some(policy) => policy.statement(sql, name, allow_mask),
            None => (Decision::Forward, None),
        }
    }

    /// Asks the policy about a Bind of `statement` whose classes (when known) are no longer all
    /// allowed, or that this session did not Parse (a SQL-level PREPARE).
    fn check_bind(&mut self, statement: &[u8]) -> Decision {
        if let Some((name, released)) = &self.released {
            let current = self.statements.get(statement);
            let same = match (released, current) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            if same && name[..] == *statement {
                return Decision::Forward;
            }
        }
        let mask = match self.statements.get(statement) {
            Some(s) => match s.mask {
                Some(mask) => mask,
                None => return Decision::Forward,
            },
            None => u32::MAX,
        };
        if mask != u32::MAX && mask & !self.allow_mask == 0 {
            return Decision::Forward;
        }
        let known = (mask != u32::MAX).then_some(mask);
        match self.policy.as_mut() {
            Some(policy) => policy.bind(known, statement),
            None => Decision::Forward,
        }
    }

    /// Holds the message being processed: the client stream pauses before it.
    fn hold(&mut self, kind: HeldKind, sql: Option<Bytes>, name: Option<Bytes>, mask: Option<u32>) -> Step {
        self.held = Some(Held { kind, sql, name, mask });
        Step::Pause
    }

    /// Forgets a prepared statement the server never created (its Parse failed or was skipped),
    /// unless the client has redefined the name since, and puts back the one it replaced, which the
    /// server still has: a named one always (a Parse of an existing name fails with 42P05), the
    /// unnamed one only when the Parse was skipped (a Parse of the unnamed statement drops the old
    /// one before it fails).
    fn forget(
        &mut self,
        statement: &Arc<PreparedStatement>,
        replaced: Option<Arc<PreparedStatement>>,
        run: bool,
    ) {
        if self.statements.get(&statement.name).is_some_and(|s| Arc::ptr_eq(s, statement)) {
            match replaced {
                Some(previous) if !run || !statement.name.is_empty() => {
                    self.statements.insert(statement.name.clone(), previous);
                }
                _ => {
                    self.statements.remove(&statement.name);
                }
            }
        }
    }

    /// Pops the head request when it is the one a bodiless answer (ParseComplete, ...) is for.
    fn pop_if(&mut self, answers: impl Fn(&Request) -> bool) {
        if self.fifo.front().is_some_and(answers) {
            self.pop();
        }
    }

    /// Notes `running` as an intent when write-ahead is on and `mask` (its classes; None: unknown)
    /// has a class that must be recorded first.
    fn note_intent(&mut self, running: &Running, mask: Option<u32>) {
        if self.wal_mask == 0 {
            return;
        }
        let barrier = mask.is_none_or(|m| m & !self.wal_contained != 0);
        if barrier {
            self.wal_barrier = true;
            self.in_block = false;
        }
        if mask.is_some_and(|m| m & self.wal_mask == 0) {
            return;
        }
        if barrier || !self.in_block {
            self.intents_strict = true;
        }
        let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        let mut statement = Statement {
            kind: running.kind,
            sql: text(&running.sql),
            statement_name: running.statement_name.as_ref().map(text),
            portal: running.portal_name.as_ref().map(text),
            params: running.params.clone(),
            tags: Vec::new(),
            rows: 0,
            status: StatementStatus::Ok,
            error: None,
            started_ns: running.started_ns,
            ended_ns: running.started_ns,
            preview: None,
        };
        if let Some(m) = &self.masking {
            statement.sql = m.record(std::mem::take(&mut statement.sql));
            if let Some(params) = statement.params.as_mut() {
                for p in params.iter_mut().flatten() {
                    *p = m.record_param(std::mem::take(p));
                }
            }
        }
        self.intents.push(statement);
    }

    fn emit(&mut self, running: Box<Running>, status: StatementStatus, now_ns: i64) {
        let mut statement = running.into_statement(status, now_ns);
        if let Some(m) = &self.masking {
            // recorded values are masked like everything else (forwarded bytes stay exact)
            statement.sql = m.record(std::mem::take(&mut statement.sql));
            if let Some(params) = statement.params.as_mut() {
                for p in params.iter_mut().flatten() {
                    *p = m.record_param(std::mem::take(p));
                }
            }
            if let Some((_, message)) = statement.error.as_mut() {
                *message = m.record(std::mem::take(message));
            }
        }
        self.done.push(statement);
    }

    // ------------------------------------------------------------------ client -> server

    fn on_client(&mut self, f: &Frame<'_>, now: i64) -> Result<Step, ProtocolError> {
        if self.client_skip {
            match f.code {
                Sync::CODE => self.client_skip = false,
                Terminate::CODE => {}
                // after a denied Parse, up to the Sync: the server would skip them after an error
                _ => return Ok(Step::Replace(Bytes::new())),
            }
        }
        // the decision on a held message, when it is fed again (the first frame)
        let resumed = self.resume.take();
        match f.code {
            Query::CODE => {
                let q = Query::from_bytes(&f.body())?;
                let (decision, mask) = match resumed {
                    Some(resumed) => resumed,
                    None => self.check_statement(&q.sql, None),
                };
                match decision {
                    Decision::Forward => {}
                    Decision::Deny(error) => return Ok(self.refuse(error, false)),
                    Decision::Hold => return Ok(self.hold(HeldKind::Query, Some(q.sql), None, mask)),
                }
                let running = Running::new(StatementKind::Query, q.sql, now);
                self.note_intent(&running, mask);
                self.push(Request::Query(running));
            }
            Parse::CODE => {
                let p = Parse::from_bytes(&retain(f.body(), f.chunk.len()))?;
                let is_resumed = resumed.is_some();
                let (decision, mask) = match resumed {
                    Some(resumed) => resumed,
                    None => self.check_statement(&p.sql, Some(&p.name[..])),
                };
                match decision {
                    Decision::Forward => {}
                    Decision::Deny(error) => return Ok(self.refuse(error, true)),
                    Decision::Hold => {
                        return Ok(self.hold(HeldKind::Parse, Some(p.sql), Some(p.name), mask));
                    }
                }
                let statement = Arc::new(PreparedStatement {
                    name: p.name.clone(),
                    sql: p.sql,
                    row_description: OnceLock::new(),
                    mask,
                });
                if is_resumed {
                    self.released = Some((p.name.clone(), Some(Arc::clone(&statement))));
                }
                let replaced = self.statements.insert(p.name, Arc::clone(&statement));
                self.push(Request::Parse(statement, replaced, now));
            }
            Bind::CODE => {
                let b = Bind::from_bytes(&retain(f.body(), f.chunk.len()))?;
                let is_resumed = resumed.is_some();
                let decision = match resumed {
                    Some((decision, _)) => decision,
                    None if self.policy.is_some() => self.check_bind(&b.statement),
                    None => Decision::Forward,
                };
                match decision {
                    Decision::Forward => {}
                    Decision::Deny(error) => return Ok(self.refuse(error, true)),
                    Decision::Hold => {
                        let sql = self.statements.get(&b.statement).map(|s| s.sql.clone());
                        let mask = self.statements.get(&b.statement).and_then(|s| s.mask);
                        return Ok(self.hold(HeldKind::Bind, sql, Some(b.statement), mask));
                    }
                }
                if is_resumed {
                    self.released = Some((b.statement.clone(), self.statements.get(&b.statement).cloned()));
                }
                let portal = Arc::new(Portal {
                    name: b.portal.clone(),
                    statement: self.statements.get(&b.statement).cloned(),
                    statement_name: b.statement,
                    param_formats: b.param_formats,
                    params: b.params,
                    result_formats: b.result_formats,
                    row_description: OnceLock::new(),
                });
                self.portals.insert(b.portal, Arc::clone(&portal));
                self.push(Request::Bind(portal, now));
            }
            Describe::CODE => {
                let d = Describe::from_bytes(&f.body())?;
                let target = match d.target {
                    Target::Statement => Described::Statement(self.statements.get(&d.name).cloned()),
                    Target::Portal => Described::Portal(self.portals.get(&d.name).cloned()),
                };
                self.push(Request::Describe(target, now));
            }
            Execute::CODE => {
                let e = Execute::from_bytes(&f.body())?;
                let mut portal = self.portals.get(&e.portal).cloned();
                let columns = self.masking.as_ref().is_some_and(|m| m.masker.has_columns());
                if columns && portal.as_ref().and_then(|p| p.row_description()).is_none() {
                    // column rules need the shape of the rows: ask the server for it first
                    let p = portal.unwrap_or_else(|| Arc::new(Portal::unbound(e.portal.clone())));
                    self.portals.insert(e.portal.clone(), Arc::clone(&p));
                    self.push(Request::InjectedDescribe(Arc::clone(&p), now));
                    portal = Some(p);
                    let running = Running::execute(e.portal.clone(), portal, now);
                    self.note_intent(&running, portal_mask(running.portal.as_ref()));
                    self.push(Request::Execute(running));
                    let mut describe = vec![Describe::CODE];
                    describe.extend_from_slice(
                        &i32::try_from(e.portal.len() + 6).unwrap_or(i32::MAX).to_be_bytes(),
                    );
                    describe.push(b'P');
                    describe.extend_from_slice(&e.portal);
                    describe.push(0);
                    describe.extend_from_slice(f.bytes());
                    return Ok(Step::Replace(Bytes::from(describe)));
                }
                let running = Running::execute(e.portal, portal, now);
                self.note_intent(&running, portal_mask(running.portal.as_ref()));
                self.push(Request::Execute(running));
            }
            Close::CODE => {
                let c = Close::from_bytes(&f.body())?;
                match c.target {
                    Target::Statement => {
                        self.statements.remove(&c.name);
                    }
                    Target::Portal => {
                        self.portals.remove(&c.name);
                    }
                }
                self.push(Request::Close(now));
            }
            Sync::CODE => {
                Sync::from_bytes(&f.body())?;
                // a released statement is bound without a check up to here
                self.released = None;
                // the server ignores Sync during copy-in (libpq sends another after CopyDone)
                if !self.client_copy_in {
                    self.push(Request::Sync);
                }
            }
            Flush::CODE => {
                Flush::from_bytes(&f.body())?;
            }
            Terminate::CODE => {
                Terminate::from_bytes(&f.body())?;
                self.terminated = true;
            }
            CopyData::CODE => {}
            CopyDone::CODE | CopyFail::CODE => {
                if f.code == CopyDone::CODE {
                    CopyDone::from_bytes(&f.body())?;
                } else {
                    CopyFail::from_bytes(&f.body())?;
                }
                if self.client_copy_in {
                    self.client_copy_in = false;
                } else {
                    // the server has not announced the copy yet (pipelined): remember where it ends
                    self.push(Request::CopyEnd);
                }
            }
            FunctionCall::CODE => {
                let fc = FunctionCall::from_bytes(&f.body())?;
                // checked in COPY-in too (see check_statement)
                let decision = match resumed {
                    Some((decision, _)) => decision,
                    None => self.policy.as_mut().map_or(Decision::Forward, Policy::function_call),
                };
                match decision {
                    Decision::Forward => {}
                    Decision::Deny(error) => return Ok(self.refuse(error, false)),
                    Decision::Hold => return Ok(self.hold(HeldKind::FunctionCall, None, None, None)),
                }
                let sql = Bytes::from(format!("function call oid={}", fc.oid));
                let mut r = Running::new(StatementKind::Function, sql, now);
                r.params = Some(render_params(&fc.args, &fc.arg_formats));
                self.note_intent(&r, None);
                self.push(Request::FunctionCall(r));
            }
            other => return Err(ProtocolError::InvalidFrontendType(other)),
        }
        Ok(Step::Keep)
    }

    // ------------------------------------------------------------------ server -> client

    fn on_server(&mut self, f: &Frame<'_>, now: i64) -> Result<Step, ProtocolError> {
        match f.code {
            DataRow::CODE => {
                if self.masking.is_some() {
                    let step = self.mask_row(f.bytes());
                    if step != Step::Pause {
                        self.rows += 1;
                        if self.preview_armed {
                            // the row as the client gets it: masked
                            let row = if let Step::Replace(frame) = &step { &frame[..] } else { f.bytes() };
                            self.preview_row(row);
                        }
                    }
                    return Ok(step);
                }
                self.rows += 1;
                if self.preview_armed {
                    self.preview_row(f.bytes());
                }
            }
            CommandComplete::CODE => {
                let c = CommandComplete::from_bytes(&f.body())?;
                self.end_result();
                let tag = String::from_utf8_lossy(&c.tag).into_owned();
                self.on_tag(tag, c.rows(), now);
            }
            EmptyQueryResponse::CODE => {
                EmptyQueryResponse::from_bytes(&f.body())?;
                self.rows_plan = None;
                self.on_tag(String::new(), None, now);
            }
            PortalSuspended::CODE => {
                PortalSuspended::from_bytes(&f.body())?;
                self.rows_plan = None;
                self.preview_armed = self.preview.rows > 0;
                if matches!(self.fifo.front(), Some(Request::Execute(_))) {
                    if let Some(Request::Execute(mut r)) = self.pop() {
                        r.rows += std::mem::take(&mut self.rows);
                        self.emit(r, StatementStatus::Suspended, now);
                    }
                }
            }
            ErrorResponse::CODE => {
                self.end_result();
                let masked = self.masking.as_mut().and_then(|m| m.notice(f.bytes()));
                let body = match &masked {
                    Some(frame) => frame.slice(5..),
                    None => f.body(),
                };
                self.on_error(&ErrorResponse::from_bytes(&body)?, now);
                return Ok(masked.map_or(Step::Keep, Step::Replace));
            }
            b'N' => {
                if let Some(frame) = self.masking.as_mut().and_then(|m| m.notice(f.bytes())) {
                    return Ok(Step::Replace(frame));
                }
            }
            b'A' => {
                if let Some(frame) = self.masking.as_mut().and_then(|m| m.notification(f.bytes())) {
                    return Ok(Step::Replace(frame));
                }
            }
            b'V' => {
                if let Some(frame) = self.masking.as_mut().and_then(|m| m.function_result(f.bytes())) {
                    return Ok(Step::Replace(frame));
                }
            }
            ReadyForQuery::CODE => {
                self.end_result();
                self.on_ready(ReadyForQuery::from_bytes(&f.body())?, now);
            }
            ParseComplete::CODE => {
                ParseComplete::from_bytes(&f.body())?;
                self.pop_if(|r| matches!(r, Request::Parse(..)));
            }
            BindComplete::CODE => {
                BindComplete::from_bytes(&f.body())?;
                self.pop_if(|r| matches!(r, Request::Bind(..)));
            }
            CloseComplete::CODE => {
                CloseComplete::from_bytes(&f.body())?;
                self.pop_if(|r| matches!(r, Request::Close(..)));
            }
            NoData::CODE => {
                NoData::from_bytes(&f.body())?;
                if matches!(self.fifo.front(), Some(Request::InjectedDescribe(..))) {
                    self.pop();
                    return Ok(Step::Replace(Bytes::new()));
                }
                self.pop_if(|r| matches!(r, Request::Describe(..)));
            }
            RowDescription::CODE => return self.on_row_description(f),
            b'G' | b'H' | b'W' => {
                if let Some(direction) = CopyDirection::from_code(f.code) {
                    let response = CopyResponse::decode(direction, &f.body())?;
                    if direction == CopyDirection::Out && self.masking.is_some() {
                        if let Some(step) = self.start_copy_out(response.format == 1) {
                            return Ok(step);
                        }
                    }
                    self.on_copy_response(direction);
                }
            }
            CopyData::CODE => {
                if let (Some(m), Some(copy)) = (self.masking.as_mut(), self.copy.as_mut()) {
                    if let Some(frame) = m.copy_data(f.bytes(), copy) {
                        return Ok(Step::Replace(frame));
                    }
                }
            }
            CopyDone::CODE => self.copy = None,
            ParameterStatus::CODE if !self.param_guard.is_empty() => {
                let p = ParameterStatus::from_bytes(&f.body())?;
                self.guard_parameter(&p.name, &p.value);
            }
            // ParameterDescription, unknown types: forwarded, nothing to track.
            _ => {}
        }
        Ok(Step::Keep)
    }

    fn guard_parameter(&mut self, name: &[u8], value: &[u8]) {
        if self.tripped.is_some() {
            return;
        }
        let Some((_, accepted)) = self.param_guard.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) else {
            return;
        };
        if !accepted.iter().any(|v| v.eq_ignore_ascii_case(value)) {
            self.tripped =
                Some(format!("{}={}", String::from_utf8_lossy(name), String::from_utf8_lossy(value)));
        }
    }

    /// The current result set (or copy) ended.
    fn end_result(&mut self) {
        self.in_copy = false;
        self.copy = None;
        self.rows_plan = None;
        if self.preview.rows > 0 {
            // a preview is taken from one result set only
            if let Some(Request::Query(r) | Request::Execute(r)) = self.fifo.front_mut() {
                if let Some(p) = r.preview.as_mut() {
                    p.sealed = true;
                }
            }
            self.preview_armed = true;
        }
    }

    /// Adds a DataRow (as forwarded) to the preview of the request it answers; disarms once that
    /// preview is full or the request takes none.
    fn preview_row(&mut self, frame: &[u8]) {
        let starts = match self.fifo.front() {
            Some(Request::Query(r) | Request::Execute(r)) => r.preview.is_none(),
            _ => {
                self.preview_armed = false;
                return;
            }
        };
        let shape = if starts { Some(self.result_shape()) } else { None };
        let limits = self.preview;
        let masking = self.masking.as_ref();
        let Some(Request::Query(r) | Request::Execute(r)) = self.fifo.front_mut() else { return };
        let builder = r.preview.get_or_insert_with(|| {
            let shape = shape.flatten();
            let shape = shape.as_ref().map(|(rd, formats, _)| (rd, &formats[..]));
            Box::new(PreviewBuilder::new(shape, limits, masking))
        });
        self.preview_armed = builder.push(frame);
    }

    /// The RowDescription body and per-column formats of the rows now arriving, when known.
    /// The last item: whether the shape came with these rows (not remembered from a Describe).
    fn result_shape(&self) -> Option<(Bytes, Vec<i16>, bool)> {
        match self.fifo.front() {
            Some(Request::Query(r)) => r.row_description.clone().map(|rd| (rd, Vec::new(), true)),
            Some(Request::Execute(r)) => {
                let p = r.portal.as_deref()?;
                if let Some(rd) = p.row_description.get() {
                    // described as a portal: the description carries the real result formats
                    return Some((rd.clone(), Vec::new(), false));
                }
                let rd = p.row_description()?.clone();
                let n = rd.get(..2).and_then(|c| <[u8; 2]>::try_from(c).ok()).map_or(0, u16::from_be_bytes);
                let n = usize::from(n);
                let formats = (0..n).map(|i| format_of(&p.result_formats, i)).collect();
                Some((rd, formats, false))
            }
            _ => None,
        }
    }

    /// Masks one DataRow, or pauses before it when its plan needs catalog names.
    fn mask_row(&mut self, frame: &[u8]) -> Step {
        if self.rows_plan.is_none() {
            let shape = self.result_shape();
            let Some(m) = self.masking.as_mut() else { return Step::Keep };
            let plan = match shape {
                None => RowsPlan::Unknown,
                Some((rd, formats, trusted)) => match m.plan(&rd, formats, trusted) {
                    Ok(Some(plan)) => RowsPlan::Plan(plan),
                    Ok(None) => RowsPlan::Nothing,
                    Err(request) => {
                        self.paused = Some(request);
                        return Step::Pause;
                    }
                },
            };
            self.rows_plan = Some(plan);
        }
        let (Some(m), Some(plan)) = (self.masking.as_mut(), self.rows_plan.as_ref()) else {
            return Step::Keep;
        };
        let replaced = match plan {
            RowsPlan::Nothing => None,
            RowsPlan::Unknown => m.data_row(frame, None),
            RowsPlan::Plan(p) => m.data_row(frame, Some(p)),
        };
        replaced.map_or(Step::Keep, Step::Replace)
    }

    /// A COPY TO STDOUT starts: with column rules, pause until the gateway has described it.
    fn start_copy_out(&mut self, binary: bool) -> Option<Step> {
        if self.copy.as_ref().is_some_and(|c| c.described) {
            return None; // resumed after the description
        }
        let mut copy = CopyState::new(binary);
        let columns = self.masking.as_ref().is_some_and(|m| m.masker.has_columns());
        let request = if columns {
            let (sql, index) = match self.fifo.front_mut() {
                Some(Request::Query(r)) => {
                    r.copies += 1;
                    (String::from_utf8_lossy(&r.sql).into_owned(), r.copies - 1)
                }
                Some(Request::Execute(r)) => (String::from_utf8_lossy(&r.sql).into_owned(), 0),
                _ => (String::new(), 0),
            };
            Some(CatalogRequest { copy: Some((sql, index)), ..CatalogRequest::default() })
        } else {
            copy.described = true;
            None
        };
        self.copy = Some(copy);
        request.map(|r| {
            self.paused = Some(r);
            Step::Pause
        })
    }

    fn on_row_description(&mut self, f: &Frame<'_>) -> Result<Step, ProtocolError> {
        let body = retain(f.body(), f.chunk.len());
        RowDescription::from_bytes(&body)?;
        self.rows_plan = None;
        if let Some(Request::InjectedDescribe(portal, _)) = self.fifo.front() {
            let _ = portal.row_description.set(body);
            self.pop();
            return Ok(Step::Replace(Bytes::new()));
        }
        match self.fifo.front_mut() {
            Some(Request::Describe(target, _)) => {
                match target {
                    Described::Statement(Some(s)) => {
                        let _ = s.row_description.set(body);
                    }
                    Described::Portal(Some(p)) => {
                        let _ = p.row_description.set(body);
                    }
                    _ => {}
                }
                self.pop();
            }
            Some(Request::Query(r)) => r.row_description = Some(body),
            _ => {}
        }
        Ok(Step::Keep)
    }

    /// CommandComplete or EmptyQueryResponse: a tag for a simple query, the end of an Execute.
    fn on_tag(&mut self, tag: String, tag_rows: Option<u64>, now: i64) {
        let rows = tag_rows.unwrap_or(self.rows);
        self.rows = 0;
        match self.fifo.front_mut() {
            Some(Request::Query(r)) => {
                r.tags.push(tag);
                r.rows += rows;
            }
            Some(Request::Execute(_)) => {
                if let Some(Request::Execute(mut r)) = self.pop() {
                    r.tags.push(tag);
                    r.rows += rows;
                    self.emit(r, StatementStatus::Ok, now);
                }
            }
            _ => {}
        }
    }

    fn on_error(&mut self, e: &ErrorResponse, now: i64) {
        self.fail_head(e, now);
        // FATAL / PANIC: the server closes the session; nothing in flight will be answered
        let severity = e.0.get(FIELD_SEVERITY_NONLOCALIZED).or_else(|| e.0.get(FIELD_SEVERITY));
        if matches!(severity.map(|s| &s[..]), Some(b"FATAL" | b"PANIC")) {
            // denials are not answered either: the client gets the FATAL error and the end
            while let Some(request) = self.fifo.pop_front() {
                if let Request::Query(r) | Request::FunctionCall(r) | Request::Execute(r) = request {
                    self.emit(r, StatementStatus::Skipped, now);
                }
            }
            self.markers = 0;
        }
    }

    /// An ErrorResponse fails the request at the head of the FIFO.
    fn fail_head(&mut self, e: &ErrorResponse, now: i64) {
        let field = |code| e.0.get(code).map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
        let error = (field(FIELD_CODE), field(FIELD_MESSAGE));
        self.in_copy = false;
        self.client_copy_in = false;
        let extended = !matches!(
            self.fifo.front(),
            None | Some(Request::Sync | Request::CopyEnd | Request::Query(_) | Request::FunctionCall(_))
        );
        if extended {
            // the server skips to the next Sync from here: silence the denials on the way
            self.discarding = true;
        }
        match self.fifo.front_mut() {
            // no request (e.g. FATAL at shutdown), or the implicit COMMIT at Sync failed
            None | Some(Request::Sync) | Some(Request::CopyEnd) | Some(Request::Denied(_)) => {}
            Some(Request::Query(r)) | Some(Request::FunctionCall(r)) => {
                r.error.get_or_insert(error);
            }
            Some(Request::Parse(..)) => {
                if let Some(Request::Parse(statement, replaced, started)) = self.pop() {
                    self.forget(&statement, replaced, true);
                    let mut r = Running::new(StatementKind::Parse, statement.sql.clone(), started);
                    r.statement_name = Some(statement.name.clone());
                    r.error = Some(error);
                    self.emit(r, StatementStatus::Error, now);
                }
                self.skip_to_sync(None, now);
            }
            Some(Request::Execute(_)) => {
                if let Some(Request::Execute(mut r)) = self.pop() {
                    r.rows += std::mem::take(&mut self.rows);
                    r.error = Some(error);
                    self.emit(r, StatementStatus::Error, now);
                }
                self.skip_to_sync(None, now);
            }
            Some(Request::Bind(..))
            | Some(Request::Describe(..))
            | Some(Request::InjectedDescribe(..))
            | Some(Request::Close(..)) => {
                let failed = self.pop().and_then(Request::into_running).map(|mut r| {
                    r.error = Some(error);
                    r
                });
                self.skip_to_sync(failed, now);
            }
        }
    }

    /// After an extended-protocol error the server skips every message up to the next Sync:
    /// report the Executes in between as skipped. The error of a failed Bind/Describe/Close
    /// (`failed`) is carried by the first of them, or reported on its own when there is none.
    fn skip_to_sync(&mut self, mut failed: Option<Box<Running>>, now: i64) {
        self.discarding = true;
        self.rows = 0;
        while self.fifo.front().is_some_and(|r| !matches!(r, Request::Sync)) {
            match self.pop() {
                Some(Request::Query(mut r) | Request::FunctionCall(mut r) | Request::Execute(mut r)) => {
                    match failed.take() {
                        Some(f) => {
                            r.error = f.error;
                            self.emit(r, StatementStatus::Error, now);
                        }
                        None => self.emit(r, StatementStatus::Skipped, now),
                    }
                }
                Some(Request::Parse(statement, replaced, _)) => self.forget(&statement, replaced, false),
                Some(_) => {}
                None => break,
            }
        }
        if let Some(f) = failed {
            self.emit(f, StatementStatus::Error, now);
        }
    }

    fn on_ready(&mut self, z: ReadyForQuery, now: i64) {
        self.tx_status = z.status;
        if z.status != b'T' {
            self.in_block = false;
        }
        self.in_copy = false;
        self.client_copy_in = false;
        let discarding = self.discarding;
        if self.fifo.iter().any(|r| r.ends_at_ready(discarding)) {
            // popping may drop denials from the FIFO: stop at the request, not at an index
            while let Some(request) = self.pop() {
                let last = request.ends_at_ready(discarding);
                match request {
                    Request::Query(mut r) | Request::FunctionCall(mut r) => {
                        r.rows += std::mem::take(&mut self.rows);
                        self.emit(r, StatementStatus::Ok, now);
                    }
                    // never answered: the server skipped it
                    Request::Execute(r) => self.emit(r, StatementStatus::Skipped, now),
                    _ => {}
                }
                if last {
                    break;
                }
            }
        }
        self.discarding = false;
        self.rows = 0;
        // the transaction status is current only with nothing in flight
        if self.tx_status == b'T' && self.fifo.is_empty() {
            self.in_block = true;
        }
        // portals die with their transaction: once idle with nothing in flight, forget them all
        if self.tx_status == b'I' && self.fifo.is_empty() {
            self.portals.clear();
        }
    }

    fn on_copy_response(&mut self, direction: CopyDirection) {
        self.in_copy = true;
        if direction == CopyDirection::Out {
            return;
        }
        // Sync/Flush sent before the end of the copy-in stream are ignored by the server
        let mut i = 1;
        while let Some(request) = self.fifo.get(i) {
            match request {
                Request::Sync => {
                    self.fifo.remove(i);
                }
                Request::CopyEnd => {
                    self.fifo.remove(i);
                    self.markers = self.markers.saturating_sub(1);
                    return;
                }
                _ => i += 1,
            }
        }
        self.client_copy_in = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_text_binary_and_null_params() {
        let values = [Some(Bytes::from_static(b"h\xffi")), Some(Bytes::from_static(b"\x00\xab")), None];
        assert_eq!(
            render_params(&values, &[0, 1, 0]),
            [Some("h\u{fffd}i".to_string()), Some("\\x00ab".to_string()), None]
        );
        assert_eq!(render_params(&values[..2], &[1]), [Some("\\x68ff69".into()), Some("\\x00ab".into())]);
    }

    #[test]
    fn small_slices_of_big_reads_are_copied() {
        let read = Bytes::from(vec![7u8; 1000]);
        let big = retain(read.slice(0..600), read.len());
        assert_eq!(big.as_ptr(), read.as_ptr(), "large share stays zero-copy");
        let small = retain(read.slice(10..20), read.len());
        assert_ne!(small.as_ptr(), read.slice(10..20).as_ptr(), "small share is copied");
        assert_eq!(small, read.slice(10..20));
    }
}
