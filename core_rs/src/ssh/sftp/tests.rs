//! Session-level tests of the SFTP engine over hand-built packets.

use super::wire::*;
use super::*;
use crate::ssh::error::SftpError;

/// Independent little encoder of SFTP packets.
#[derive(Default)]
struct P(Vec<u8>);

impl P {
    fn new(kind: u8) -> Self {
        Self(vec![kind])
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn s(self, b: &[u8]) -> Self {
        let mut p = self.u32(b.len() as u32);
        p.0.extend_from_slice(b);
        p
    }
    fn done(self) -> Vec<u8> {
        [&(self.0.len() as u32).to_be_bytes()[..], &self.0].concat()
    }
}

fn status(id: u32, code: u32) -> Vec<u8> {
    P::new(FXP_STATUS).u32(id).u32(code).s(b"msg").s(b"").done()
}

fn rec(kind: OpKind, path: &str, status: Status) -> Record {
    Record { kind, path: path.into(), target: None, name: None, pflags: None, bytes: None, status }
}

/// A small recorded session: (client bytes, server bytes), in the order they flowed.
fn session_script() -> Vec<(Vec<u8>, Vec<u8>)> {
    let open_w = P::new(FXP_OPEN).u32(1).s(b"up.txt").u32(FXF_WRITE | FXF_CREAT | FXF_TRUNC).u32(0).done();
    let write = |id, off, data: &[u8]| P::new(FXP_WRITE).u32(id).s(b"H1").u64(off).s(data).done();
    let read = |id| P::new(FXP_READ).u32(id).s(b"H2").u64(0).u32(100).done();
    vec![
        (P::new(FXP_INIT).u32(3).done(), P::new(FXP_VERSION).u32(3).s(b"x@y").s(b"1").done()),
        (
            [open_w, P::new(FXP_STAT).u32(9).s(b"up.txt").done()].concat(),
            P::new(FXP_HANDLE).u32(1).s(b"H1").done(),
        ),
        ([write(2, 0, b"hello"), write(3, 5, b" world")].concat(), [status(2, 0), status(3, 0)].concat()),
        (P::new(FXP_CLOSE).u32(4).s(b"H1").done(), status(4, 0)),
        (
            P::new(FXP_OPEN).u32(5).s(b"down.bin").u32(FXF_READ).u32(0).done(),
            P::new(FXP_HANDLE).u32(5).s(b"H2").done(),
        ),
        (
            [read(6), read(7)].concat(),
            [P::new(FXP_DATA).u32(6).s(&[7; 100]).done(), P::new(FXP_DATA).u32(7).s(&[7; 20]).done()]
                .concat(),
        ),
        (
            [read(8), P::new(FXP_CLOSE).u32(10).s(b"H2").done()].concat(),
            [status(8, 1), status(10, 0)].concat(),
        ),
        (P::new(FXP_MKDIR).u32(11).s(b"d").u32(0).done(), status(11, 0)),
        (P::new(FXP_RENAME).u32(12).s(b"up.txt").s(b"d/up.txt").done(), status(12, 0)),
        (P::new(FXP_REMOVE).u32(13).s(b"nope").done(), status(13, 2)),
        (P::new(FXP_RMDIR).u32(14).s(b"d").done(), status(14, 4)),
        (P::new(FXP_SYMLINK).u32(15).s(b"target").s(b"link").done(), status(15, 0)),
        (P::new(FXP_EXTENDED).u32(16).s(b"hardlink@openssh.com").s(b"old").s(b"new").done(), status(16, 0)),
        (
            P::new(FXP_EXTENDED).u32(17).s(b"copy-data").s(b"H9").done(),
            P::new(FXP_EXTENDED_REPLY).u32(17).done(),
        ),
        (P::new(FXP_SETSTAT).u32(18).s(b"f").u32(0).done(), status(18, 0)),
        (P::new(FXP_OPENDIR).u32(19).s(b"/").done(), P::new(FXP_HANDLE).u32(19).s(b"D1").done()),
        (P::new(FXP_READDIR).u32(20).s(b"D1").done(), P::new(FXP_NAME).u32(20).u32(0).done()),
        (P::new(FXP_CLOSE).u32(21).s(b"D1").done(), status(21, 0)),
    ]
}

fn expected_records() -> Vec<Record> {
    let open = |path: &str, pflags| Record { pflags: Some(pflags), ..rec(OpKind::Open, path, Status::OK) };
    let close = |path: &str, r, w| Record { bytes: Some((r, w)), ..rec(OpKind::Close, path, Status::OK) };
    let with_target = |kind, path: &str, target: &str, status| Record {
        target: Some(target.into()),
        ..rec(kind, path, status)
    };
    vec![
        open("up.txt", 0x1a),
        close("up.txt", 0, 11),
        open("down.bin", 1),
        close("down.bin", 120, 0),
        rec(OpKind::Mkdir, "d", Status::OK),
        with_target(OpKind::Rename, "up.txt", "d/up.txt", Status::OK),
        rec(OpKind::Remove, "nope", Status::Code(2)),
        rec(OpKind::Rmdir, "d", Status::Code(4)),
        with_target(OpKind::Symlink, "link", "target", Status::OK),
        with_target(OpKind::Link, "new", "old", Status::OK),
        Record { name: Some("copy-data".into()), ..rec(OpKind::Extended, "", Status::OK) },
        rec(OpKind::Setstat, "f", Status::OK),
        rec(OpKind::Opendir, "/", Status::OK),
    ]
}

/// Runs the script with each side's bytes cut by `cuts` (a list of chunk sizes, cycled);
/// returns (forwarded client bytes, decision op kinds, records).
fn run(cuts: &[usize]) -> (Vec<u8>, Vec<OpKind>, Vec<Record>) {
    let mut s = SftpSession::new(DEFAULT_MAX_PACKET_TEST);
    let (mut fwd, mut ops, mut recs) = (Vec::new(), Vec::new(), Vec::new());
    let mut k = 0;
    let mut next_cut = || {
        k += 1;
        cuts[k % cuts.len()].max(1)
    };
    for (client, server) in session_script() {
        let mut rest = &client[..];
        while !rest.is_empty() {
            let (a, b) = rest.split_at(next_cut().min(rest.len()));
            for chunk in s.feed_client(a).unwrap() {
                if let Some(op) = &chunk.op {
                    ops.push(op.kind);
                }
                fwd.extend_from_slice(&chunk.data);
            }
            rest = b;
        }
        let mut rest = &server[..];
        while !rest.is_empty() {
            let (a, b) = rest.split_at(next_cut().min(rest.len()));
            recs.extend(s.feed_server(a).unwrap());
            rest = b;
        }
    }
    assert_eq!(s.version(), Some(3));
    recs.extend(s.finish());
    (fwd, ops, recs)
}

const DEFAULT_MAX_PACKET_TEST: usize = 4096;

#[test]
fn records_every_kind_of_operation() {
    let (fwd, ops, recs) = run(&[usize::MAX]);
    let client: Vec<u8> = session_script().into_iter().flat_map(|(c, _)| c).collect();
    assert_eq!(fwd, client);
    use OpKind::*;
    assert_eq!(
        ops,
        vec![Open, Open, Mkdir, Rename, Remove, Rmdir, Symlink, Link, Extended, Setstat, Opendir]
    );
    assert_eq!(recs, expected_records());
}

#[test]
fn identical_results_for_any_split() {
    let whole = run(&[usize::MAX]);
    assert_eq!(run(&[1]), whole);
    for a in 1..12 {
        assert_eq!(run(&[a, 3 * a + 1, 7]), whole, "cuts {a}");
    }
    // deterministic pseudo-random cuts
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..50 {
        let cuts: Vec<usize> = (0..17)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                1 + (x % 40) as usize
            })
            .collect();
        assert_eq!(run(&cuts), whole);
    }
}

#[test]
fn decision_chunks_are_exact_and_pass_through_is_coalesced() {
    let mut s = SftpSession::default();
    let init = P::new(FXP_INIT).u32(3).done();
    let stat = P::new(FXP_STAT).u32(1).s(b"/x").done();
    let rm = P::new(FXP_REMOVE).u32(2).s(b"/x").done();
    let unknown = P::new(77).u32(5).done();
    let rm2 = P::new(FXP_REMOVE).u32(6).s(b"/x").done();
    let input = [&init[..], &stat, &rm, &unknown, &rm2[..3]].concat();
    let chunks = s.feed_client(&input).unwrap();
    assert_eq!(chunks.len(), 3);
    assert_eq!((chunks[0].data.clone(), chunks[0].op.clone()), ([init, stat].concat(), None));
    assert_eq!(chunks[1].data, rm);
    let op = chunks[1].op.clone().unwrap();
    assert_eq!((op.id, op.kind, op.path.as_str(), op.write), (2, OpKind::Remove, "/x", true));
    assert_eq!((chunks[2].data.clone(), chunks[2].op.clone()), (unknown, None));
    assert_eq!(s.buffered(), (3, 0));
    let chunks = s.feed_client(&rm2[3..]).unwrap();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].data, rm2);
}

#[test]
fn refused_requests_answer_permission_denied_and_are_recorded() {
    let mut s = SftpSession::default();
    let open = P::new(FXP_OPEN).u32(7).s(b"secret").u32(FXF_READ).u32(0).done();
    let op = s.feed_client(&open).unwrap()[0].op.clone().unwrap();
    assert_eq!(op.pflags, Some(FXF_READ));
    assert!(!op.write);
    let reply = s.refuse(7, "denied by policy");
    assert_eq!(reply, status_packet(7, FX_PERMISSION_DENIED, "denied by policy"));
    assert_eq!(
        s.feed_server(&[]).unwrap(),
        vec![Record { pflags: Some(FXF_READ), ..rec(OpKind::Open, "secret", Status::Refused) }]
    );
    // refusing an id that is not a pending decision records nothing
    s.refuse(99, "x");
    assert_eq!(s.finish(), vec![]);
}

#[test]
fn finish_reports_unanswered_requests_and_open_handles() {
    let mut s = SftpSession::default();
    s.feed_client(&P::new(FXP_OPEN).u32(1).s(b"a").u32(FXF_WRITE).u32(0).done()).unwrap();
    s.feed_server(&P::new(FXP_HANDLE).u32(1).s(b"h").done()).unwrap();
    s.feed_client(&P::new(FXP_WRITE).u32(2).s(b"h").u64(0).s(b"abc").done()).unwrap();
    s.feed_server(&status(2, 0)).unwrap();
    s.feed_client(&P::new(FXP_FSETSTAT).u32(3).s(b"h").u32(0).done()).unwrap();
    s.feed_client(&P::new(FXP_MKDIR).u32(4).s(b"m").u32(0).done()).unwrap();
    s.feed_server(&status(3, 0)).unwrap();
    assert_eq!(
        s.finish(),
        vec![
            rec(OpKind::Mkdir, "m", Status::NoReply),
            Record { bytes: Some((0, 3)), ..rec(OpKind::Close, "a", Status::Unclosed) },
        ]
    );
}

#[test]
fn fsetstat_names_the_handle_path() {
    let mut s = SftpSession::default();
    s.feed_client(&P::new(FXP_OPEN).u32(1).s(b"a").u32(FXF_WRITE).u32(0).done()).unwrap();
    s.feed_server(&P::new(FXP_HANDLE).u32(1).s(b"h").done()).unwrap();
    let chunks = s.feed_client(&P::new(FXP_FSETSTAT).u32(3).s(b"h").u32(0).done()).unwrap();
    assert_eq!(chunks[0].op.as_ref().map(|o| (o.path.as_str(), o.unknown_handle)), Some(("a", false)));
    // a handle never returned by the server
    let chunks = s.feed_client(&P::new(FXP_FSETSTAT).u32(4).s(b"zz").u32(0).done()).unwrap();
    assert_eq!(chunks[0].op.as_ref().map(|o| (o.path.as_str(), o.unknown_handle)), Some(("", true)));
    // nor one closed already
    s.feed_client(&P::new(FXP_CLOSE).u32(5).s(b"h").done()).unwrap();
    s.feed_server(&status(5, 0)).unwrap();
    let chunks = s.feed_client(&P::new(FXP_FSETSTAT).u32(6).s(b"h").u32(0).done()).unwrap();
    assert_eq!(chunks[0].op.as_ref().map(|o| (o.path.as_str(), o.unknown_handle)), Some(("", true)));
    assert_eq!(s.feed_server(&status(6, 0)).unwrap(), vec![rec(OpKind::Fsetstat, "", Status::OK)]);
}

#[test]
fn lossy_paths() {
    let mut s = SftpSession::default();
    let chunks = s.feed_client(&P::new(FXP_MKDIR).u32(1).s(b"a\xffb").u32(0).done()).unwrap();
    assert_eq!(chunks[0].op.as_ref().map(|o| o.path.as_str()), Some("a\u{fffd}b"));
}

#[test]
fn malformed_packets_are_errors_and_stick() {
    let cases: Vec<(Vec<u8>, SftpError)> = vec![
        (vec![0, 0, 0, 0], SftpError::EmptyPacket),
        (vec![0, 0x10, 0, 1], SftpError::TooLarge { length: 0x10_0001, limit: DEFAULT_MAX_PACKET }),
        (P::new(FXP_OPEN).u32(1).s(b"a").done(), SftpError::Truncated { packet: "open", field: "pflags" }),
        (
            [&9u32.to_be_bytes()[..], &[FXP_RENAME, 0, 0, 0, 1, 0, 0, 0, 9]].concat(),
            SftpError::Truncated { packet: "rename", field: "oldpath" },
        ),
        (
            P::new(FXP_CLOSE).u32(1).s(&[0; 257]).done(),
            SftpError::HandleTooLong { packet: "close", len: 257 },
        ),
    ];
    for (bytes, err) in cases {
        let mut s = SftpSession::new(DEFAULT_MAX_PACKET);
        assert_eq!(s.feed_client(&bytes), Err(err.clone()));
        assert_eq!(s.feed_client(b""), Err(err.clone()));
        assert_eq!(s.feed_server(b""), Err(err));
    }
    // the length guard is the configured one, checked before the body arrives
    let mut s = SftpSession::new(100);
    assert!(s.feed_client(&[0, 0, 0, 101]).is_err());
    let mut s = SftpSession::new(100);
    assert!(s.feed_client(&[0, 0, 0, 100]).is_ok());
}

#[test]
fn server_errors() {
    let mut s = SftpSession::default();
    assert_eq!(s.feed_server(&P::new(FXP_VERSION).u32(6).done()), Err(SftpError::UnsupportedVersion(6)));
    assert_eq!(SftpError::UnsupportedVersion(6).to_string(), "unsupported SFTP version 6");
    let mut s = SftpSession::default();
    assert_eq!(
        s.feed_server(&P::new(FXP_HANDLE).u32(1).done()),
        Err(SftpError::Truncated { packet: "handle", field: "handle" })
    );
    // unknown reply types and replies to unknown ids pass
    let mut s = SftpSession::default();
    assert_eq!(s.feed_server(&[P::new(150).done(), status(42, 0)].concat()), Ok(vec![]));
}

#[test]
fn tracking_is_bounded() {
    // 4 requests waiting at most: a fifth is an error (forgetting one would let its id be reused)
    let mut s = SftpSession::with_limits(DEFAULT_MAX_PACKET, 4, 2);
    let rms: Vec<u8> =
        (1..=4).flat_map(|id| P::new(FXP_REMOVE).u32(id).s(format!("f{id}").as_bytes()).done()).collect();
    assert_eq!(s.feed_client(&rms).unwrap().len(), 4);
    assert_eq!(s.feed_server(&status(4, 0)).unwrap(), vec![rec(OpKind::Remove, "f4", Status::OK)]);
    // room again for one, of any kind
    s.feed_client(&P::new(FXP_STAT).u32(5).s(b"x").done()).unwrap();
    assert_eq!(s.feed_client(&P::new(FXP_STAT).u32(6).s(b"x").done()), Err(SftpError::TooManyPending(4)));
    assert_eq!(s.feed_server(b""), Err(SftpError::TooManyPending(4)));
    // 3 handles with room for 2: the oldest is reported unclosed and forgotten
    let mut s = SftpSession::with_limits(DEFAULT_MAX_PACKET, 4, 2);
    for id in 1..=3u32 {
        s.feed_client(&P::new(FXP_OPEN).u32(id).s(format!("f{id}").as_bytes()).u32(FXF_READ).u32(0).done())
            .unwrap();
        let recs = s.feed_server(&P::new(FXP_HANDLE).u32(id).s(format!("h{id}").as_bytes()).done()).unwrap();
        if id == 3 {
            assert_eq!(recs[1], Record { bytes: Some((0, 0)), ..rec(OpKind::Close, "f1", Status::Unclosed) });
        }
    }
    assert_eq!(s.dropped(), 1);
    // a write op on the forgotten handle does not pass for harmless
    let op = s.feed_client(&P::new(FXP_FSETSTAT).u32(9).s(b"h1").u32(0).done()).unwrap()[0].op.clone();
    let op = op.unwrap();
    assert_eq!((op.path.as_str(), op.unknown_handle, op.write), ("", true, true));
    // nor are READs and WRITEs on it counted, nor its CLOSE recorded (the close was recorded already)
    s.feed_client(&P::new(FXP_WRITE).u32(10).s(b"h1").u64(0).s(b"abc").done()).unwrap();
    s.feed_client(&P::new(FXP_CLOSE).u32(11).s(b"h1").done()).unwrap();
    assert_eq!(s.feed_server(&[status(10, 0), status(11, 0)].concat()).unwrap(), vec![]);
    assert_eq!(s.finish().len(), 3, "fsetstat (no reply) and two handles");
    // a big session with the default caps stays within them
    let mut s = SftpSession::default();
    let many: Vec<u8> =
        (0..MAX_PENDING as u32).flat_map(|id| P::new(FXP_MKDIR).u32(id).s(b"x").u32(0).done()).collect();
    assert_eq!(s.feed_client(&many).unwrap().len(), MAX_PENDING);
    assert_eq!(s.finish().len(), MAX_PENDING);
}

#[test]
fn a_pending_request_id_cannot_be_reused() {
    // the attack: two OPENs with id 7, so that the first HANDLE reply (for /etc/canary) would be
    // taken for /tmp/harmless, and a FSETSTAT on it judged against the wrong path
    let mut s = SftpSession::default();
    let open = |path: &[u8]| P::new(FXP_OPEN).u32(7).s(path).u32(FXF_READ).u32(0).done();
    assert!(s.feed_client(&open(b"/etc/canary")).unwrap()[0].op.is_some());
    let err = SftpError::IdReused(7);
    assert_eq!(s.feed_client(&open(b"/tmp/harmless")), Err(err.clone()));
    assert_eq!(err.to_string(), "sftp request id 7 reused while a request with that id is pending");
    assert_eq!(s.feed_client(b""), Err(err.clone()));
    assert_eq!(s.feed_server(&P::new(FXP_HANDLE).u32(7).s(b"h").done()), Err(err));
    // in one read too, and whatever the kinds: pass-through requests (STAT, READ) count
    let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (P::new(FXP_STAT).u32(7).s(b"/x").done(), open(b"/etc/canary")),
        (open(b"/etc/canary"), P::new(FXP_STAT).u32(7).s(b"/x").done()),
        (P::new(FXP_READ).u32(7).s(b"zz").u64(0).u32(9).done(), open(b"/etc/canary")),
        (P::new(FXP_CLOSE).u32(7).s(b"zz").done(), open(b"/etc/canary")),
        (P::new(77).u32(7).done(), open(b"/etc/canary")),
        (P::new(FXP_EXTENDED).u32(7).s(b"statvfs@openssh.com").s(b"/").done(), open(b"/etc/canary")),
    ];
    for (first, second) in cases {
        let mut s = SftpSession::default();
        assert_eq!(s.feed_client(&[first, second].concat()), Err(SftpError::IdReused(7)));
    }
    // once answered (or refused), the id is free again
    let mut s = SftpSession::default();
    s.feed_client(&open(b"/etc/canary")).unwrap();
    s.feed_server(&P::new(FXP_HANDLE).u32(7).s(b"h").done()).unwrap();
    s.feed_client(&P::new(FXP_STAT).u32(7).s(b"/x").done()).unwrap();
    s.feed_server(&P::new(FXP_ATTRS).u32(7).u32(0).done()).unwrap();
    s.feed_client(&open(b"/tmp/harmless")).unwrap();
    s.refuse(7, "no");
    let op = s.feed_client(&P::new(FXP_FSETSTAT).u32(7).s(b"h").u32(0).done()).unwrap()[0].op.clone();
    assert_eq!(op.map(|o| (o.path, o.unknown_handle)), Some(("/etc/canary".into(), false)));
    // INIT has no id; unknown packets too short for one pass untracked
    let mut s = SftpSession::default();
    let init = P::new(FXP_INIT).u32(3).done();
    s.feed_client(&[&init[..], &init, &P::new(77).done(), &P::new(77).done()].concat()).unwrap();
    assert_eq!(s.finish(), vec![]);
}
