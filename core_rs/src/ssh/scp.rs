//! The legacy scp protocol (`scp -O`; `scp -t` sink and `scp -f` source on the server).
//!
//! [`ScpStream`] watches the direction that carries the control lines and the file bytes (client
//! to server for an upload, server to client for a download):
//!
//! ```text
//! T<mtime> 0 <atime> 0\n       times (ignored)
//! C<mode> <size> <name>\n      a file: then <size> bytes, then a \0 (or an error line)
//! D<mode> 0 <name>\n           enter a directory
//! E\n                          leave it
//! \x01<message>\n              warning; \x02<message>\n fatal error
//! ```
//!
//! `\0` acknowledgements between records are skipped. A protocol violation is reported once and
//! the stream stops parsing (the bytes still pass: the gateway never rewrites a transfer).

use memchr::memchr;

/// The longest control line accepted (OpenSSH's own buffer is 2 KiB).
pub const MAX_LINE: usize = 4096;

/// What the stream shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScpRecord {
    /// A file whose bytes have passed (`transferred == size`), or cut short at [`ScpStream::finish`].
    File { path: String, mode: String, size: u64, transferred: u64 },
    /// A `D` line: the directory `path` (relative, joined with the directories entered).
    Mkdir { path: String, mode: String },
    /// An error line of the peer (`\x01`, `\x02`), or a protocol violation.
    Error { message: String },
}

#[derive(Debug)]
enum State {
    Line,
    Data { path: String, mode: String, size: u64, remaining: u64 },
    Stopped,
}

/// Parser of one scp protocol stream; never fails.
#[derive(Debug)]
pub struct ScpStream {
    state: State,
    line: Vec<u8>,
    dirs: Vec<String>,
}

impl Default for ScpStream {
    fn default() -> Self {
        Self::new()
    }
}

impl ScpStream {
    pub fn new() -> Self {
        Self { state: State::Line, line: Vec::new(), dirs: Vec::new() }
    }

    /// Whether a protocol violation stopped the parsing.
    pub fn stopped(&self) -> bool {
        matches!(self.state, State::Stopped)
    }

    /// The records completed by `data`.
    pub fn feed(&mut self, data: &[u8]) -> Vec<ScpRecord> {
        let mut out = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            match &mut self.state {
                State::Stopped => break,
                State::Data { remaining, .. } => {
                    let n = usize::try_from(*remaining).unwrap_or(usize::MAX).min(rest.len());
                    *remaining -= n as u64;
                    rest = rest.get(n..).unwrap_or_default();
                    self.end_of_data(&mut out);
                }
                State::Line => {
                    if self.line.is_empty() {
                        let skip = rest.iter().take_while(|&&b| b == 0).count();
                        rest = rest.get(skip..).unwrap_or_default();
                        if rest.is_empty() {
                            break;
                        }
                    }
                    let (part, end) = match memchr(b'\n', rest) {
                        Some(i) => (rest.get(..i).unwrap_or_default(), Some(i + 1)),
                        None => (rest, None),
                    };
                    if self.line.len() + part.len() > MAX_LINE {
                        self.violation(&mut out, format!("control line longer than {MAX_LINE} bytes"));
                        break;
                    }
                    self.line.extend_from_slice(part);
                    match end {
                        Some(end) => {
                            rest = rest.get(end..).unwrap_or_default();
                            let line = std::mem::take(&mut self.line);
                            self.on_line(&line, &mut out);
                        }
                        None => rest = &[],
                    }
                }
            }
        }
        out
    }

    /// At stream end: a file cut short, or a control line cut short (as an error).
    pub fn finish(&mut self) -> Vec<ScpRecord> {
        let mut out = Vec::new();
        match std::mem::replace(&mut self.state, State::Stopped) {
            State::Data { path, mode, size, remaining } => {
                out.push(ScpRecord::File { path, mode, size, transferred: size - remaining });
            }
            State::Line if !self.line.is_empty() => {
                out.push(ScpRecord::Error { message: "stream ended inside a control line".into() });
            }
            _ => {}
        }
        self.line.clear();
        out
    }

    fn end_of_data(&mut self, out: &mut Vec<ScpRecord>) {
        if let State::Data { remaining: 0, .. } = self.state {
            if let State::Data { path, mode, size, .. } = std::mem::replace(&mut self.state, State::Line) {
                out.push(ScpRecord::File { path, mode, size, transferred: size });
            }
        }
    }

    fn violation(&mut self, out: &mut Vec<ScpRecord>, message: String) {
        out.push(ScpRecord::Error { message: format!("scp protocol violation: {message}") });
        self.state = State::Stopped;
        self.line = Vec::new();
    }

    fn on_line(&mut self, line: &[u8], out: &mut Vec<ScpRecord>) {
        let Some((&code, rest)) = line.split_first() else {
            return self.violation(out, "empty control line".into());
        };
        match code {
            b'C' | b'D' => match parse_entry(rest) {
                Ok((mode, size, name)) => {
                    let path = self
                        .dirs
                        .iter()
                        .map(String::as_str)
                        .chain([name.as_str()])
                        .collect::<Vec<_>>()
                        .join("/");
                    if code == b'D' {
                        self.dirs.push(name);
                        out.push(ScpRecord::Mkdir { path, mode });
                    } else {
                        self.state = State::Data { path, mode, size, remaining: size };
                        self.end_of_data(out);
                    }
                }
                Err(why) => self.violation(out, format!("{why} in {}", snippet(line))),
            },
            b'E' => {
                self.dirs.pop();
            }
            b'T' => {
                if !valid_times(rest) {
                    self.violation(out, format!("bad times in {}", snippet(line)));
                }
            }
            1 | 2 => out.push(ScpRecord::Error { message: String::from_utf8_lossy(rest).into_owned() }),
            _ => self.violation(out, format!("unexpected control line {}", snippet(line))),
        }
    }
}

/// `<4 octal digits> <decimal size> <name>` of a C or D line.
fn parse_entry(rest: &[u8]) -> Result<(String, u64, String), &'static str> {
    let mode = rest.get(..4).ok_or("bad mode")?;
    if !mode.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return Err("bad mode");
    }
    let rest = rest.get(4..).unwrap_or_default();
    let rest = rest.strip_prefix(b" ").ok_or("mode not delimited")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let mut size: u64 = 0;
    for &d in rest.get(..digits).unwrap_or_default() {
        size = size
            .checked_mul(10)
            .and_then(|s| s.checked_add(u64::from(d - b'0')))
            .ok_or("size out of range")?;
    }
    let name = rest.get(digits..).unwrap_or_default().strip_prefix(b" ").ok_or("size not delimited")?;
    if name.is_empty() || name.contains(&b'/') || name == b".." {
        return Err("unexpected filename");
    }
    Ok((String::from_utf8_lossy(mode).into_owned(), size, String::from_utf8_lossy(name).into_owned()))
}

/// `<mtime> <usec> <atime> <usec>`, all decimal.
fn valid_times(rest: &[u8]) -> bool {
    let fields: Vec<&[u8]> = rest.split(|&b| b == b' ').collect();
    fields.len() == 4
        && fields.iter().all(|f| !f.is_empty() && f.len() <= 20 && f.iter().all(u8::is_ascii_digit))
}

/// The start of a line for an error message, printable.
fn snippet(line: &[u8]) -> String {
    let head = line.get(..line.len().min(64)).unwrap_or_default();
    format!("{:?}", String::from_utf8_lossy(head))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, mode: &str, size: u64) -> ScpRecord {
        ScpRecord::File { path: path.into(), mode: mode.into(), size, transferred: size }
    }

    const UPLOAD: &[u8] = b"T1700000000 0 1700000000 0\nD0755 0 dir\nC0644 5 a.txt\nhello\0D0700 0 sub\nC0600 0 empty\n\0E\nE\nC0644 3 top\nxyz\0\x01scp: warning\n";

    fn expected() -> Vec<ScpRecord> {
        vec![
            ScpRecord::Mkdir { path: "dir".into(), mode: "0755".into() },
            file("dir/a.txt", "0644", 5),
            ScpRecord::Mkdir { path: "dir/sub".into(), mode: "0700".into() },
            file("dir/sub/empty", "0600", 0),
            file("top", "0644", 3),
            ScpRecord::Error { message: "scp: warning".into() },
        ]
    }

    #[test]
    fn records_a_recursive_upload() {
        let mut s = ScpStream::new();
        assert_eq!(s.feed(UPLOAD), expected());
        assert_eq!(s.finish(), vec![]);
    }

    #[test]
    fn same_records_at_every_split_and_byte_by_byte() {
        for cut in 0..=UPLOAD.len() {
            let mut s = ScpStream::new();
            let mut got = s.feed(&UPLOAD[..cut]);
            got.extend(s.feed(&UPLOAD[cut..]));
            assert_eq!(got, expected(), "cut at {cut}");
        }
        let mut s = ScpStream::new();
        let got: Vec<_> = UPLOAD.iter().flat_map(|b| s.feed(&[*b])).collect();
        assert_eq!(got, expected());
    }

    #[test]
    fn leading_ack_and_cut_short_file() {
        let mut s = ScpStream::new();
        assert_eq!(s.feed(b"\0C0644 10 f\n0123"), vec![]);
        assert_eq!(
            s.finish(),
            vec![ScpRecord::File { path: "f".into(), mode: "0644".into(), size: 10, transferred: 4 }]
        );
        let mut s = ScpStream::new();
        s.feed(b"C0644 1");
        assert_eq!(
            s.finish(),
            vec![ScpRecord::Error { message: "stream ended inside a control line".into() }]
        );
    }

    #[test]
    fn violations_are_reported_once_then_the_stream_passes() {
        for (bad, why) in [
            (&b"X junk\n"[..], "unexpected control line"),
            (b"C06a4 1 f\n", "bad mode"),
            (b"C0644x1 f\n", "mode not delimited"),
            (b"C0644 1x f\n", "size not delimited"),
            (b"C0644 1 ../etc\n", "unexpected filename"),
            (b"C0644 1 ..\n", "unexpected filename"),
            (b"D0755 0 \n", "unexpected filename"),
            (b"C0644 99999999999999999999999 f\n", "size out of range"),
            (b"T1 0 x 0\n", "bad times"),
            (b"\n", "empty control line"),
        ] {
            let mut s = ScpStream::new();
            let got = s.feed(bad);
            assert_eq!(got.len(), 1, "{bad:?}");
            let ScpRecord::Error { message } = &got[0] else { panic!("{got:?}") };
            assert!(message.starts_with("scp protocol violation: ") && message.contains(why), "{message}");
            assert!(s.stopped());
            assert_eq!(s.feed(b"C0644 1 f\nx"), vec![]);
            assert_eq!(s.finish(), vec![]);
        }
        let mut s = ScpStream::new();
        let got = s.feed(&[b'C'; MAX_LINE + 1]);
        assert!(matches!(&got[..], [ScpRecord::Error { message }] if message.contains("longer than 4096")));
    }
}
