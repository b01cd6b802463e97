//! The per-channel SFTP state machine: decisions on client requests, operation records from the
//! server's replies.

use std::mem;

use super::ops::{Op, OpKind, Record, Status};
use super::reply::{self, Reply};
use super::request::{self, Request};
use super::table::Table;
use super::wire::{frame, open_writes, status_packet, FX_OK, FX_PERMISSION_DENIED};
use crate::ssh::error::SftpError;

/// Default guard for one SFTP packet (the length word's value; OpenSSH's own limit is 256 KiB).
pub const DEFAULT_MAX_PACKET: usize = 1 << 20;
/// Requests awaiting a reply that a client may have at most (OpenSSH's `sftp` keeps 64 by
/// default); one more is an error, as forgetting one would let its id be reused unnoticed.
pub const MAX_PENDING: usize = 10_000;
/// Open handles that the session tracks at most.
pub const MAX_HANDLES: usize = 10_000;

/// Client bytes in order: either exactly one request packet to decide on (`op` set), or bytes to
/// forward as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub data: Vec<u8>,
    pub op: Option<Op>,
}

/// A request waiting for its reply.
#[derive(Debug)]
enum Pending {
    Op(Op),
    /// A request that is neither decided nor counted (STAT, READDIR, I/O on an unknown handle, ...).
    Plain,
    Read(Vec<u8>),
    Write(Vec<u8>, u64),
    Close(Vec<u8>),
}

/// An open handle.
#[derive(Debug)]
struct Handle {
    path: String,
    dir: bool,
    read: u64,
    written: u64,
}

impl Handle {
    fn close_record(self, status: Status) -> Record {
        Record {
            kind: OpKind::Close,
            path: self.path,
            target: None,
            name: None,
            pflags: None,
            bytes: Some((self.read, self.written)),
            status,
        }
    }
}

/// Both directions of one `sftp` subsystem channel.
///
/// Records: one per decided request when its reply comes (refused ones at the next
/// [`SftpSession::feed_server`] or [`SftpSession::finish`]); for file handles one more, `close`,
/// with the bytes read and written through the handle. Directory handles get no close record.
/// Requests that change nothing (STAT, READDIR, REALPATH, ...) are neither decided nor recorded.
///
/// Replies are matched to requests by id, so every request with an id (all but INIT, unknown
/// packet types included) is tracked until its reply, and a client request reusing the id of one
/// still pending is an error ([`SftpError::IdReused`]), as is more than the cap of requests
/// pending ([`SftpError::TooManyPending`]). Handles are capped too: past the cap the oldest file
/// handle is recorded at once as `unclosed` and forgotten, and requests on a handle the session
/// does not know (that one, or any never returned by the server) are decided with path "" and
/// [`Op::unknown_handle`] set.
#[derive(Debug)]
pub struct SftpSession {
    max_packet: usize,
    client_buf: Vec<u8>,
    server_buf: Vec<u8>,
    version: Option<u32>,
    pending: Table<u32, Pending>,
    max_pending: usize,
    handles: Table<Vec<u8>, Handle>,
    queued: Vec<Record>,
    failed: Option<SftpError>,
}

impl SftpSession {
    pub fn new(max_packet: usize) -> Self {
        Self::with_limits(max_packet, MAX_PENDING, MAX_HANDLES)
    }

    /// A session that tracks at most `pending` requests and `handles` handles.
    pub fn with_limits(max_packet: usize, pending: usize, handles: usize) -> Self {
        Self {
            max_packet,
            client_buf: Vec::new(),
            server_buf: Vec::new(),
            version: None,
            pending: Table::new(pending),
            max_pending: pending.max(1),
            handles: Table::new(handles),
            queued: Vec::new(),
            failed: None,
        }
    }

    /// The version the server announced.
    pub fn version(&self) -> Option<u32> {
        self.version
    }

    /// Handles whose tracking was dropped for room.
    pub fn dropped(&self) -> u64 {
        self.handles.dropped()
    }

    /// Bytes of incomplete packets held, `(client, server)`.
    pub fn buffered(&self) -> (usize, usize) {
        (self.client_buf.len(), self.server_buf.len())
    }

    /// Client→server bytes, as chunks in order (consecutive pass-through packets coalesced;
    /// partial packets held). After an error, every feed repeats it.
    pub fn feed_client(&mut self, data: &[u8]) -> Result<Vec<Chunk>, SftpError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let mut buf = mem::take(&mut self.client_buf);
        let buffered = !buf.is_empty();
        if buffered {
            buf.extend_from_slice(data);
        }
        let input: &[u8] = if buffered { &buf } else { data };
        let mut out = Vec::new();
        let (mut start, mut pos) = (0, 0);
        let result = loop {
            let rest = input.get(pos..).unwrap_or_default();
            let len = match frame(rest, self.max_packet) {
                Ok(Some(len)) => len,
                Ok(None) => break Ok(()),
                Err(err) => break Err(err),
            };
            let packet = rest.get(..len).unwrap_or_default();
            let op =
                match request::decode(packet.get(4..).unwrap_or_default()).and_then(|r| self.on_request(r)) {
                    Ok(op) => op,
                    Err(err) => break Err(err),
                };
            if let Some(op) = op {
                if pos > start {
                    out.push(Chunk { data: input.get(start..pos).unwrap_or_default().to_vec(), op: None });
                }
                out.push(Chunk { data: packet.to_vec(), op: Some(op) });
                start = pos + len;
            }
            pos += len;
        };
        if let Err(err) = result {
            self.failed = Some(err.clone());
            return Err(err);
        }
        if pos > start {
            out.push(Chunk { data: input.get(start..pos).unwrap_or_default().to_vec(), op: None });
        }
        if buffered {
            buf.drain(..pos);
        } else {
            buf.extend_from_slice(data.get(pos..).unwrap_or_default());
        }
        self.client_buf = buf;
        Ok(out)
    }

    /// Server→client bytes (forwarded unchanged by the caller): the records completed by them,
    /// after those of requests refused since the last call.
    pub fn feed_server(&mut self, data: &[u8]) -> Result<Vec<Record>, SftpError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let mut buf = mem::take(&mut self.server_buf);
        buf.extend_from_slice(data);
        let mut out = mem::take(&mut self.queued);
        let mut pos = 0;
        let result = loop {
            let rest = buf.get(pos..).unwrap_or_default();
            let len = match frame(rest, self.max_packet) {
                Ok(Some(len)) => len,
                Ok(None) => break Ok(()),
                Err(err) => break Err(err),
            };
            let body = rest.get(4..len).unwrap_or_default();
            if let Err(err) = reply::decode(body).and_then(|r| self.on_reply(r, &mut out)) {
                break Err(err);
            }
            pos += len;
        };
        if let Err(err) = result {
            self.queued = out;
            self.failed = Some(err.clone());
            return Err(err);
        }
        buf.drain(..pos);
        self.server_buf = buf;
        out.append(&mut self.queued);
        Ok(out)
    }

    /// A STATUS `SSH_FX_PERMISSION_DENIED` packet to send the client instead of request `id`;
    /// the request is recorded as refused (returned by the next `feed_server` or `finish`).
    pub fn refuse(&mut self, id: u32, message: &str) -> Vec<u8> {
        if matches!(self.pending.get(&id), Some(Pending::Op(_))) {
            if let Some(Pending::Op(op)) = self.pending.remove(&id) {
                self.queued.push(Record::of(op, Status::Refused));
            }
        }
        status_packet(id, FX_PERMISSION_DENIED, message)
    }

    /// At channel end: queued records, decided requests never answered (`no reply`, oldest
    /// first), then file handles still open (`close` records, `unclosed`). Resets the tracking.
    pub fn finish(&mut self) -> Vec<Record> {
        let mut out = mem::take(&mut self.queued);
        for (_, pending) in self.pending.drain() {
            if let Pending::Op(op) = pending {
                out.push(Record::of(op, Status::NoReply));
            }
        }
        for (_, handle) in self.handles.drain() {
            if !handle.dir {
                out.push(handle.close_record(Status::Unclosed));
            }
        }
        self.client_buf.clear();
        self.server_buf.clear();
        out
    }

    fn on_request(&mut self, req: Request<'_>) -> Result<Option<Op>, SftpError> {
        if let Some(id) = req.id() {
            if self.pending.get(&id).is_some() {
                return Err(SftpError::IdReused(id));
            }
            if self.pending.len() >= self.max_pending {
                return Err(SftpError::TooManyPending(self.max_pending));
            }
        }
        let (id, pending) = match req {
            Request::Init { .. } | Request::Other { id: None } => return Ok(None),
            Request::Other { id: Some(id) } => (id, Pending::Plain),
            Request::Read { id, handle } => (id, self.io(handle, Pending::Read)),
            Request::Write { id, handle, len } => (id, self.io(handle, |h| Pending::Write(h, len))),
            Request::Close { id, handle } => {
                let known = self.handles.get(&handle.to_vec()).is_some();
                (id, if known { Pending::Close(handle.to_vec()) } else { Pending::Plain })
            }
            decided => match self.decision(decided) {
                Some(op) => (op.id, Pending::Op(op)),
                None => return Ok(None),
            },
        };
        let op = match &pending {
            Pending::Op(op) => Some(op.clone()),
            _ => None,
        };
        self.pending.insert(id, pending);
        Ok(op)
    }

    /// The decision on a request that can change the filesystem (none for the others).
    fn decision(&self, req: Request<'_>) -> Option<Op> {
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let op = |id, kind, path: &[u8], write| Op {
            id,
            kind,
            path: lossy(path),
            target: None,
            name: None,
            pflags: None,
            write,
            unknown_handle: false,
        };
        Some(match req {
            Request::Open { id, path, pflags } => {
                Op { pflags: Some(pflags), ..op(id, OpKind::Open, path, open_writes(pflags)) }
            }
            Request::Opendir { id, path } => op(id, OpKind::Opendir, path, false),
            Request::Remove { id, path } => op(id, OpKind::Remove, path, true),
            Request::Mkdir { id, path } => op(id, OpKind::Mkdir, path, true),
            Request::Rmdir { id, path } => op(id, OpKind::Rmdir, path, true),
            Request::Setstat { id, path } => op(id, OpKind::Setstat, path, true),
            Request::Fsetstat { id, handle } => match self.handles.get(&handle.to_vec()) {
                Some(h) => Op { path: h.path.clone(), ..op(id, OpKind::Fsetstat, b"", true) },
                None => Op { unknown_handle: true, ..op(id, OpKind::Fsetstat, b"", true) },
            },
            Request::Rename { id, from, to } => {
                Op { target: Some(lossy(to)), ..op(id, OpKind::Rename, from, true) }
            }
            Request::Symlink { id, link, target } => {
                Op { target: Some(lossy(target)), ..op(id, OpKind::Symlink, link, true) }
            }
            Request::Link { id, link, target } => {
                Op { target: Some(lossy(target)), ..op(id, OpKind::Link, link, true) }
            }
            Request::Extended { id, name } => {
                Op { name: Some(lossy(name)), ..op(id, OpKind::Extended, b"", true) }
            }
            Request::Init { .. }
            | Request::Other { .. }
            | Request::Read { .. }
            | Request::Write { .. }
            | Request::Close { .. } => return None,
        })
    }

    /// What a READ or WRITE waits as: counted on a known file handle, plain otherwise.
    fn io(&self, handle: &[u8], pending: impl FnOnce(Vec<u8>) -> Pending) -> Pending {
        let handle = handle.to_vec();
        if self.handles.get(&handle).is_some_and(|h| !h.dir) {
            pending(handle)
        } else {
            Pending::Plain
        }
    }

    fn on_reply(&mut self, reply: Reply<'_>, out: &mut Vec<Record>) -> Result<(), SftpError> {
        match reply {
            Reply::Version { version } => {
                if version != 3 {
                    return Err(SftpError::UnsupportedVersion(version));
                }
                self.version = Some(version);
            }
            Reply::Unknown => {}
            Reply::Status { id, code } => match self.pending.remove(&id) {
                Some(Pending::Op(op)) => out.push(Record::of(op, Status::Code(code))),
                Some(Pending::Write(handle, n)) => {
                    if let (FX_OK, Some(h)) = (code, self.handles.get_mut(&handle)) {
                        h.written += n;
                    }
                }
                Some(Pending::Close(handle)) => {
                    // OpenSSH drops the handle even when close fails
                    if let Some(h) = self.handles.remove(&handle) {
                        if !h.dir {
                            out.push(h.close_record(Status::Code(code)));
                        }
                    }
                }
                Some(Pending::Read(_) | Pending::Plain) | None => {}
            },
            Reply::Handle { id, handle } => match self.pending.remove(&id) {
                Some(Pending::Op(op)) if matches!(op.kind, OpKind::Open | OpKind::Opendir) => {
                    let h = Handle {
                        path: op.path.clone(),
                        dir: op.kind == OpKind::Opendir,
                        read: 0,
                        written: 0,
                    };
                    let (replaced, evicted) = self.handles.insert(handle.to_vec(), h);
                    out.push(Record::of(op, Status::OK));
                    for old in [replaced, evicted].into_iter().flatten() {
                        if !old.dir {
                            out.push(old.close_record(Status::Unclosed));
                        }
                    }
                }
                Some(Pending::Op(op)) => out.push(Record::of(op, Status::Unexpected)),
                _ => {}
            },
            Reply::Data { id, len } => match self.pending.remove(&id) {
                Some(Pending::Read(handle)) => {
                    if let Some(h) = self.handles.get_mut(&handle) {
                        h.read += len;
                    }
                }
                Some(Pending::Op(op)) => out.push(Record::of(op, Status::Unexpected)),
                _ => {}
            },
            Reply::Other { id } => {
                if let Some(Pending::Op(op)) = self.pending.remove(&id) {
                    let status = if op.kind == OpKind::Extended { Status::OK } else { Status::Unexpected };
                    out.push(Record::of(op, status));
                }
            }
        }
        Ok(())
    }
}

impl Default for SftpSession {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PACKET)
    }
}
