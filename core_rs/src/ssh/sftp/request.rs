//! Decoding of client→server SFTP packets into [`Request`]s.

use super::wire::*;
use crate::ssh::error::SftpError;

/// One client packet, decoded as far as the audit and the policy need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    Init {
        version: u32,
    },
    Open {
        id: u32,
        path: &'a [u8],
        pflags: u32,
    },
    Close {
        id: u32,
        handle: &'a [u8],
    },
    Read {
        id: u32,
        handle: &'a [u8],
    },
    Write {
        id: u32,
        handle: &'a [u8],
        len: u64,
    },
    Opendir {
        id: u32,
        path: &'a [u8],
    },
    Remove {
        id: u32,
        path: &'a [u8],
    },
    /// `SSH_FXP_RENAME` and `posix-rename@openssh.com`.
    Rename {
        id: u32,
        from: &'a [u8],
        to: &'a [u8],
    },
    Mkdir {
        id: u32,
        path: &'a [u8],
    },
    Rmdir {
        id: u32,
        path: &'a [u8],
    },
    /// `SSH_FXP_SETSTAT` and `lsetstat@openssh.com`.
    Setstat {
        id: u32,
        path: &'a [u8],
    },
    Fsetstat {
        id: u32,
        handle: &'a [u8],
    },
    /// `SSH_FXP_SYMLINK`; OpenSSH sends the target first and the link path second (the reverse of
    /// the draft, see OpenSSH's PROTOCOL file), and so do the clients that talk to it.
    Symlink {
        id: u32,
        link: &'a [u8],
        target: &'a [u8],
    },
    /// `hardlink@openssh.com`: `link` is the new name, `target` the existing file.
    Link {
        id: u32,
        link: &'a [u8],
        target: &'a [u8],
    },
    /// Any other `SSH_FXP_EXTENDED` request: a decision without a path.
    Extended {
        id: u32,
        name: &'a [u8],
    },
    /// Requests that change nothing (STAT, LSTAT, FSTAT, READDIR, REALPATH, READLINK, the
    /// read-only OpenSSH extensions), and packet types this engine does not know (their first
    /// word taken as the request id, as every request but INIT has one; `None` if too short).
    Other {
        id: Option<u32>,
    },
}

impl Request<'_> {
    /// The request id (none for INIT and for unknown packets too short to hold one).
    pub fn id(&self) -> Option<u32> {
        match *self {
            Self::Init { .. } => None,
            Self::Other { id } => id,
            Self::Open { id, .. }
            | Self::Close { id, .. }
            | Self::Read { id, .. }
            | Self::Write { id, .. }
            | Self::Opendir { id, .. }
            | Self::Remove { id, .. }
            | Self::Rename { id, .. }
            | Self::Mkdir { id, .. }
            | Self::Rmdir { id, .. }
            | Self::Setstat { id, .. }
            | Self::Fsetstat { id, .. }
            | Self::Symlink { id, .. }
            | Self::Link { id, .. }
            | Self::Extended { id, .. } => Some(id),
        }
    }
}

/// OpenSSH extensions that only read, forwarded without a decision.
const READ_ONLY_EXTENSIONS: &[&[u8]] = &[
    b"statvfs@openssh.com",
    b"fstatvfs@openssh.com",
    b"limits@openssh.com",
    b"expand-path@openssh.com",
    b"fsync@openssh.com",
    b"home-directory",
    b"users-groups-by-id@openssh.com",
];

/// Decode one packet: `body` is everything after the length word (type byte first, never empty).
pub fn decode(body: &[u8]) -> Result<Request<'_>, SftpError> {
    let Some((&kind, rest)) = body.split_first() else { return Ok(Request::Other { id: None }) };
    let name = match kind {
        FXP_INIT => "init",
        FXP_OPEN => "open",
        FXP_CLOSE => "close",
        FXP_READ => "read",
        FXP_WRITE => "write",
        FXP_LSTAT => "lstat",
        FXP_FSTAT => "fstat",
        FXP_SETSTAT => "setstat",
        FXP_FSETSTAT => "fsetstat",
        FXP_OPENDIR => "opendir",
        FXP_READDIR => "readdir",
        FXP_REMOVE => "remove",
        FXP_MKDIR => "mkdir",
        FXP_RMDIR => "rmdir",
        FXP_REALPATH => "realpath",
        FXP_STAT => "stat",
        FXP_RENAME => "rename",
        FXP_READLINK => "readlink",
        FXP_SYMLINK => "symlink",
        FXP_EXTENDED => "extended",
        _ => {
            let id = rest.get(..4).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes);
            return Ok(Request::Other { id });
        }
    };
    let mut r = Reader::new(rest, name);
    if kind == FXP_INIT {
        return Ok(Request::Init { version: r.u32("version")? });
    }
    let id = r.u32("request id")?;
    Ok(match kind {
        FXP_OPEN => {
            let path = r.string("filename")?;
            Request::Open { id, path, pflags: r.u32("pflags")? }
        }
        FXP_CLOSE => Request::Close { id, handle: r.handle()? },
        FXP_READ => {
            let handle = r.handle()?;
            r.u64("offset")?;
            r.u32("length")?;
            Request::Read { id, handle }
        }
        FXP_WRITE => {
            let handle = r.handle()?;
            r.u64("offset")?;
            Request::Write { id, handle, len: r.string("data")?.len() as u64 }
        }
        FXP_FSTAT | FXP_READDIR => {
            r.handle()?;
            Request::Other { id: Some(id) }
        }
        FXP_LSTAT | FXP_STAT | FXP_REALPATH | FXP_READLINK => {
            r.string("path")?;
            Request::Other { id: Some(id) }
        }
        FXP_SETSTAT => Request::Setstat { id, path: r.string("path")? },
        FXP_FSETSTAT => Request::Fsetstat { id, handle: r.handle()? },
        FXP_OPENDIR => Request::Opendir { id, path: r.string("path")? },
        FXP_REMOVE => Request::Remove { id, path: r.string("filename")? },
        FXP_MKDIR => Request::Mkdir { id, path: r.string("path")? },
        FXP_RMDIR => Request::Rmdir { id, path: r.string("path")? },
        FXP_RENAME => {
            let from = r.string("oldpath")?;
            Request::Rename { id, from, to: r.string("newpath")? }
        }
        FXP_SYMLINK => {
            let target = r.string("targetpath")?;
            Request::Symlink { id, target, link: r.string("linkpath")? }
        }
        _ => extended(id, &mut r)?,
    })
}

fn extended<'a>(id: u32, r: &mut Reader<'a>) -> Result<Request<'a>, SftpError> {
    let name = r.string("extended request")?;
    Ok(match name {
        b"posix-rename@openssh.com" => {
            let from = r.string("oldpath")?;
            Request::Rename { id, from, to: r.string("newpath")? }
        }
        b"hardlink@openssh.com" => {
            let target = r.string("oldpath")?;
            Request::Link { id, target, link: r.string("newpath")? }
        }
        b"lsetstat@openssh.com" => Request::Setstat { id, path: r.string("path")? },
        _ if READ_ONLY_EXTENSIONS.contains(&name) => Request::Other { id: Some(id) },
        _ => Request::Extended { id, name },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(b: &[u8]) -> Vec<u8> {
        [&(b.len() as u32).to_be_bytes()[..], b].concat()
    }

    #[test]
    fn decodes_opens_and_extensions() {
        let body =
            [&[FXP_OPEN][..], &7u32.to_be_bytes(), &s(b"/a"), &0x1au32.to_be_bytes(), &[0; 4]].concat();
        assert_eq!(decode(&body), Ok(Request::Open { id: 7, path: b"/a", pflags: 0x1a }));
        let body =
            [&[FXP_EXTENDED][..], &1u32.to_be_bytes(), &s(b"posix-rename@openssh.com"), &s(b"x"), &s(b"y")]
                .concat();
        assert_eq!(decode(&body), Ok(Request::Rename { id: 1, from: b"x", to: b"y" }));
        let body = [&[FXP_EXTENDED][..], &1u32.to_be_bytes(), &s(b"statvfs@openssh.com"), &s(b"/")].concat();
        assert_eq!(decode(&body), Ok(Request::Other { id: Some(1) }));
        let body = [&[FXP_EXTENDED][..], &2u32.to_be_bytes(), &s(b"copy-data")].concat();
        assert_eq!(decode(&body), Ok(Request::Extended { id: 2, name: b"copy-data" }));
    }

    #[test]
    fn truncated_fields_are_errors_and_unknown_types_pass() {
        let body = [&[FXP_OPEN][..], &7u32.to_be_bytes(), &s(b"/a")].concat();
        assert_eq!(decode(&body), Err(SftpError::Truncated { packet: "open", field: "pflags" }));
        assert_eq!(
            decode(&[FXP_REMOVE, 0, 0]),
            Err(SftpError::Truncated { packet: "remove", field: "request id" })
        );
        assert_eq!(decode(&[FXP_INIT]), Err(SftpError::Truncated { packet: "init", field: "version" }));
        assert_eq!(decode(&[99, 1, 2]), Ok(Request::Other { id: None }));
        assert_eq!(decode(&[99, 0, 0, 0, 5, 9]), Ok(Request::Other { id: Some(5) }));
        assert_eq!(decode(&[FXP_STATUS]), Ok(Request::Other { id: None }));
        assert_eq!(decode(&[FXP_INIT, 0, 0, 0, 3]).map(|r| r.id()), Ok(None));
    }
}
