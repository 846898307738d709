//! Unpacking one uncompressed image layer (a tar stream) into a directory in the form
//! overlayfs expects of a lower layer, as containerd's overlayfs snapshotter gets it from
//! `archive/tar.go` with `OverlayConvertWhiteout`:
//! - `.wh.NAME` becomes a character device 0/0 named `NAME` (overlayfs' whiteout);
//! - `.wh..wh..opq` in D sets `trusted.overlay.opaque=y` on D and is not itself written;
//! - other `.wh..wh.*` names (aufs metadata such as `.wh..wh.plnk/`) are skipped, as docker does.
//!
//! Layers are untrusted: names with a `..` component are refused, absolute names are taken
//! relative to `dest` (as docker does), and nothing is ever resolved through a symlink. Every
//! parent under `dest` must be a real directory by lstat, and the final component is removed
//! and re-created (files with `O_NOFOLLOW|O_CREAT|O_EXCL`), since later members override earlier.
//!
//! Formats: ustar (with prefix), GNU (`L`/`K` long names, base-256 numbers), PAX `x` headers
//! (`path`, `linkpath`, `size`, `uid`, `gid`, `mtime`, `SCHILY.xattr.*`); PAX `g` global headers
//! are ignored. Sparse members (`S`, or PAX `GNU.sparse.*`) and multi-volume `M` members are
//! refused, as their data is not the file's content; other unknown types are skipped with their
//! data. Xattrs in the `trusted.overlay.` namespace from the layer are dropped: overlayfs gives
//! them meaning, and the whiteout names are the layer's only say in that.

use std::ffi::{CString, OsStr};
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{lchown, symlink, DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The xattr overlayfs reads to hide the lower layers' contents of a directory.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

const BLOCK: usize = 512;
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// Largest PAX / GNU long-name member read into memory (Go's `archive/tar` limit).
const MAX_META: u64 = 1 << 20;

/// What one unpack wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Members applied (files, dirs, links, devices, whiteouts, opaque markers).
    pub entries: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
    /// Whiteout devices and opaque markers among `entries`.
    pub whiteouts: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("reading the layer: {0}")]
    Read(#[source] io::Error),
    #[error("corrupt tar header at byte {offset}: {reason}")]
    Corrupt { offset: u64, reason: String },
    #[error("layer entry {path:?} is refused: {reason}")]
    Refused { path: String, reason: String },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn werr(path: &Path) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Write { path: path.to_path_buf(), source }
}

fn corrupt(offset: u64, reason: impl Into<String>) -> UnpackError {
    UnpackError::Corrupt { offset, reason: reason.into() }
}

fn eof(what: &str) -> UnpackError {
    UnpackError::Read(io::Error::new(io::ErrorKind::UnexpectedEof, format!("the layer ends {what}")))
}

/// Unpack the tar stream `tar` into `dest` (an existing, empty directory).
/// Reads the stream up to the end-of-archive marker only; the caller drains the rest
/// (its digest covers the whole stream). Bytes the internal buffer read ahead have passed
/// through `tar` once, so a hashing reader still sees every byte exactly once.
pub fn unpack_layer<R: Read>(tar: R, dest: &Path) -> Result<UnpackStats, UnpackError> {
    if !fs::metadata(dest).map_err(werr(dest))?.is_dir() {
        return Err(werr(dest)(io::Error::from_raw_os_error(libc::ENOTDIR)));
    }
    let mut u = Unpacker {
        input: Blocks { inner: BufReader::with_capacity(64 * 1024, tar), offset: 0 },
        dest: dest.to_path_buf(),
        stats: UnpackStats::default(),
        dirs: Vec::new(),
    };
    u.run()?;
    // Directory modes and mtimes last, as tar does: a 0555 directory must still get its
    // children, and writing children changes the directory's mtime.
    for (path, mode, mtime) in std::mem::take(&mut u.dirs) {
        if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(werr(&path))?;
            set_mtime(&path, mtime).map_err(werr(&path))?;
        }
    }
    Ok(u.stats)
}

/// The tar stream read in 512-byte blocks, with the offset for error messages.
struct Blocks<R> {
    inner: BufReader<R>,
    offset: u64,
}

impl<R: Read> Blocks<R> {
    /// Reads one block; `Ok(false)` at a clean EOF before its first byte.
    fn block(&mut self, buf: &mut [u8; BLOCK]) -> Result<bool, UnpackError> {
        let mut got = 0;
        while got < BLOCK {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => return Err(eof("inside a header block")),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(UnpackError::Read(e)),
            }
        }
        self.offset += BLOCK as u64;
        Ok(true)
    }

    /// Passes `size` bytes of member data, then its padding to a block, to `out`
    /// straight from the read buffer.
    fn data(&mut self, size: u64, out: &mut dyn Write, path: &Path) -> Result<(), UnpackError> {
        // No stream holds a member of nearly 2^64 bytes: that one ends inside its data.
        let padded = size.checked_next_multiple_of(BLOCK as u64).ok_or_else(|| eof("inside a member's data"))?;
        let mut left = padded;
        while left > 0 {
            let buf = match self.inner.fill_buf() {
                Ok([]) => return Err(eof("inside a member's data")),
                Ok(buf) => buf,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(UnpackError::Read(e)),
            };
            let n = left.min(buf.len() as u64) as usize;
            let content = (n as u64).min(left.saturating_sub(padded - size)) as usize;
            out.write_all(&buf[..content]).map_err(werr(path))?;
            self.inner.consume(n);
            left -= n as u64;
            self.offset += n as u64;
        }
        Ok(())
    }

    fn skip(&mut self, size: u64) -> Result<(), UnpackError> {
        self.data(size, &mut io::sink(), Path::new("/dev/null"))
    }

    /// Reads a small metadata member (PAX records, GNU long names) into memory.
    fn meta(&mut self, size: u64, at: u64) -> Result<Vec<u8>, UnpackError> {
        if size > MAX_META {
            return Err(corrupt(at, format!("extended header of {size} bytes is too large")));
        }
        let mut v = Vec::with_capacity(size as usize);
        self.data(size, &mut v, Path::new("<memory>"))?;
        Ok(v)
    }
}

/// One member's header, with any extended headers merged in.
struct Header {
    typeflag: u8,
    name: Vec<u8>,
    link: Vec<u8>,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    dev: (u32, u32),
}

/// The bytes of a NUL-terminated field.
fn cstr(field: &[u8]) -> &[u8] {
    field.iter().position(|&b| b == 0).map_or(field, |n| &field[..n])
}

/// A numeric field: octal text, or GNU base-256 when the high bit of the first byte is set.
fn number(field: &[u8]) -> Result<u64, String> {
    if let Some((&first, rest)) = field.split_first().filter(|(f, _)| *f & 0x80 != 0) {
        if first == 0xff {
            return Err("negative base-256 number".into());
        }
        let mut v = u64::from(first & 0x7f);
        for &b in rest {
            if v >> 56 != 0 {
                return Err("base-256 number overflows".into());
            }
            v = (v << 8) | u64::from(b);
        }
        return Ok(v);
    }
    let start = field.iter().position(|&b| b != b' ' && b != 0).unwrap_or(field.len());
    let mut v: u64 = 0;
    for &b in field[start..].iter().take_while(|&&b| b != b' ' && b != 0) {
        if !(b'0'..=b'7').contains(&b) {
            return Err(format!("bad octal digit {:?}", char::from(b)));
        }
        v = v.checked_mul(8).map(|v| v + u64::from(b - b'0')).ok_or("octal number overflows")?;
    }
    Ok(v)
}

fn parse_header(b: &[u8; BLOCK], at: u64) -> Result<Header, UnpackError> {
    let num = |lo: usize, hi: usize, what: &str| number(&b[lo..hi]).map_err(|r| corrupt(at, format!("{what}: {r}")));
    let small = |lo, hi, what| {
        let v = num(lo, hi, what)?;
        u32::try_from(v).map_err(|_| corrupt(at, format!("{what} {v} is out of range")))
    };
    let stored = num(148, 156, "checksum")?;
    let (mut unsigned, mut signed) = (0u64, 0i64);
    for (i, &byte) in b.iter().enumerate() {
        let byte = if (148..156).contains(&i) { b' ' } else { byte };
        unsigned += u64::from(byte);
        signed += i64::from(byte as i8);
    }
    // Old writers summed signed chars; accept either sum, as Go's archive/tar does.
    if stored != unsigned && i64::try_from(stored) != Ok(signed) {
        return Err(corrupt(at, format!("checksum {stored:o} does not match the header ({unsigned:o})")));
    }
    let mut name = cstr(&b[..100]).to_vec();
    if &b[257..263] == b"ustar\0" {
        // POSIX ustar keeps a name prefix; star's variant shortens it to 131 bytes.
        let prefix = if &b[508..512] == b"tar\0" { cstr(&b[345..476]) } else { cstr(&b[345..500]) };
        if !prefix.is_empty() {
            name = [prefix, b"/", &name].concat();
        }
    }
    let mtime = num(136, 148, "mtime")?;
    let typeflag = b[156];
    let dev = if matches!(typeflag, b'3' | b'4') {
        (small(329, 337, "devmajor")?, small(337, 345, "devminor")?)
    } else {
        (0, 0)
    };
    Ok(Header {
        typeflag,
        name,
        link: cstr(&b[157..257]).to_vec(),
        mode: small(100, 108, "mode")? & 0o7777,
        uid: small(108, 116, "uid")?,
        gid: small(116, 124, "gid")?,
        size: num(124, 136, "size")?,
        mtime: (i64::try_from(mtime).map_err(|_| corrupt(at, "mtime out of range"))?, 0),
        dev,
    })
}

/// Extended-header values waiting for the member they describe.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u32>,
    gid: Option<u32>,
    mtime: Option<(i64, i64)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    sparse: bool,
}

/// A PAX time, `SECS[.FRACTION]`, possibly negative.
fn pax_time(v: &str) -> Option<(i64, i64)> {
    let (neg, v) = v.strip_prefix('-').map_or((false, v), |v| (true, v));
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if !frac.bytes().all(|b| b.is_ascii_digit()) || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = int.parse().ok()?;
    let nanos: i64 = format!("{:0<9}", &frac[..frac.len().min(9)]).parse().ok()?;
    Some(match (neg, nanos) {
        (false, _) => (secs, nanos),
        (true, 0) => (-secs, 0),
        (true, _) => (-secs - 1, 1_000_000_000 - nanos),
    })
}

/// Parses PAX records `LEN KEY=VALUE\n` into `p`; an empty value cancels the keyword.
fn parse_pax(mut data: &[u8], p: &mut Pending, at: u64) -> Result<(), UnpackError> {
    let bad = |what: &str| corrupt(at, format!("PAX header: {what}"));
    while !data.iter().all(|&b| b == 0) {
        let sp = data.iter().position(|&b| b == b' ').ok_or_else(|| bad("record without a length"))?;
        let len: usize =
            std::str::from_utf8(&data[..sp]).ok().and_then(|s| s.parse().ok()).ok_or_else(|| bad("bad length"))?;
        if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(bad("record length does not fit"));
        }
        let record = &data[sp + 1..len - 1];
        data = &data[len..];
        let eq = record.iter().position(|&b| b == b'=').ok_or_else(|| bad("record without '='"))?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        let text = std::str::from_utf8(value).ok().filter(|s| !s.is_empty());
        let parsed = |what| text.map(|s| s.parse::<u64>().map_err(|_| bad(what))).transpose();
        let id = |what| parsed(what)?.map(|v| u32::try_from(v).map_err(|_| bad(what))).transpose();
        let value_opt = (!value.is_empty()).then(|| value.to_vec());
        match key {
            b"path" => p.path = value_opt,
            b"linkpath" => p.link = value_opt,
            b"size" => p.size = parsed("bad size")?,
            b"uid" => p.uid = id("bad uid")?,
            b"gid" => p.gid = id("bad gid")?,
            b"mtime" => p.mtime = text.map(|s| pax_time(s).ok_or_else(|| bad("bad mtime"))).transpose()?,
            _ if key.starts_with(b"GNU.sparse.") => p.sparse = true,
            _ => {
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.").filter(|n| !n.is_empty()) {
                    p.xattrs.push((name.to_vec(), value.to_vec()));
                }
            }
        }
    }
    Ok(())
}

/// The components of a member name: `./`, leading `/`, `//` and `.` dropped; `..` refused.
fn components(name: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    for c in name.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("the path has a `..` component".into()),
            c if c.contains(&0) => return Err("the path has a NUL byte".into()),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn shown(comps: &[&[u8]]) -> String {
    String::from_utf8_lossy(&comps.join(&b'/')).into_owned()
}

struct Unpacker<R> {
    input: Blocks<R>,
    dest: PathBuf,
    stats: UnpackStats,
    /// Directories declared by the layer: mode and mtime, applied at the end.
    dirs: Vec<(PathBuf, u32, (i64, i64))>,
}

impl<R: Read> Unpacker<R> {
    fn run(&mut self) -> Result<(), UnpackError> {
        let mut block = [0u8; BLOCK];
        let mut pending = Pending::default();
        loop {
            let at = self.input.offset;
            if !self.input.block(&mut block)? {
                return Err(eof("without an end-of-archive marker"));
            }
            if block.iter().all(|&b| b == 0) {
                // The end is two zero blocks; tolerate EOF after the first, as GNU tar does.
                let second = self.input.offset;
                if !self.input.block(&mut block)? || block.iter().all(|&b| b == 0) {
                    return Ok(());
                }
                return Err(corrupt(second, "a lone zero block inside the archive"));
            }
            let mut h = parse_header(&block, at)?;
            match h.typeflag {
                b'x' => parse_pax(&self.input.meta(h.size, at)?, &mut pending, at)?,
                b'g' => self.input.skip(h.size)?,
                b'L' => pending.long_name = Some(cstr(&self.input.meta(h.size, at)?).to_vec()),
                b'K' => pending.long_link = Some(cstr(&self.input.meta(h.size, at)?).to_vec()),
                _ => {
                    let p = std::mem::take(&mut pending);
                    // GNU long names win over PAX paths, as in Go's archive/tar.
                    if let Some(name) = p.long_name.or(p.path) {
                        h.name = name;
                    }
                    if let Some(link) = p.long_link.or(p.link) {
                        h.link = link;
                    }
                    h.size = p.size.unwrap_or(h.size);
                    h.uid = p.uid.unwrap_or(h.uid);
                    h.gid = p.gid.unwrap_or(h.gid);
                    h.mtime = p.mtime.unwrap_or(h.mtime);
                    if p.sparse {
                        h.typeflag = b'S';
                    }
                    self.entry(h, &p.xattrs)?;
                }
            }
        }
    }

    /// Applies one member (its header block already read).
    fn entry(&mut self, h: Header, xattrs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), UnpackError> {
        let refuse =
            |reason: String| UnpackError::Refused { path: String::from_utf8_lossy(&h.name).into_owned(), reason };
        let kind = match h.typeflag {
            0 if h.name.ends_with(b"/") => b'5', // pre-POSIX directory
            0 | b'0' | b'7' => b'0',
            b'1'..=b'6' => h.typeflag,
            b'S' => return Err(refuse("sparse files are not supported".into())),
            b'M' => return Err(refuse("multi-volume members are not supported".into())),
            _ => return self.input.skip(h.size),
        };
        let comps = components(&h.name).map_err(refuse)?;
        let Some((&base, parents)) = comps.split_last() else {
            if kind == b'5' {
                // "./" is dest itself, which the caller made.
                return self.input.skip(h.size);
            }
            return Err(refuse("the entry names the layer root".into()));
        };
        // aufs metadata (`.wh..wh.plnk/...`, `.wh..wh.aufs`) is no part of the filesystem;
        // docker's overlay2 skips it too (hardlinks into `.wh..wh.plnk` are then refused).
        let aufs = |c: &&[u8]| c.starts_with(WHITEOUT_META_PREFIX) && *c != OPAQUE_MARKER;
        if parents.iter().any(aufs) || aufs(&base) {
            return self.input.skip(h.size);
        }
        if kind != b'0' || base.starts_with(WHITEOUT_PREFIX) {
            self.input.skip(h.size)?;
        }
        if base == OPAQUE_MARKER {
            let dir = self.walk(parents, &refuse, true)?;
            lsetxattr(&dir, OPAQUE_XATTR.as_bytes(), b"y").map_err(werr(&dir))?;
            self.stats.entries += 1;
            self.stats.whiteouts += 1;
            return Ok(());
        }
        if let Some(orig) = base.strip_prefix(WHITEOUT_PREFIX) {
            if matches!(orig, b"" | b"." | b"..") {
                return Err(refuse("the whiteout names no file".into()));
            }
            let path = self.walk(parents, &refuse, true)?.join(OsStr::from_bytes(orig));
            self.clear(&path, false)?;
            mknod(&path, libc::S_IFCHR, 0).map_err(werr(&path))?;
            lchown(&path, Some(h.uid), Some(h.gid)).map_err(werr(&path))?;
            self.stats.entries += 1;
            self.stats.whiteouts += 1;
            return Ok(());
        }
        let path = self.walk(parents, &refuse, true)?.join(OsStr::from_bytes(base));
        match kind {
            b'0' => {
                self.clear(&path, false)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(werr(&path))?;
                self.input.data(h.size, &mut file, &path)?;
                drop(file);
                self.stats.bytes += h.size;
                owner_xattrs(&path, &h, xattrs)?;
                fs::set_permissions(&path, fs::Permissions::from_mode(h.mode)).map_err(werr(&path))?;
            }
            b'1' => {
                // Hardlinks share the target's inode, whose metadata came with its own header.
                let tcomps = components(&h.link).map_err(|r| refuse(format!("hardlink target: {r}")))?;
                if tcomps.is_empty() {
                    return Err(refuse("the hardlink target is the layer root".into()));
                }
                let target = self.walk(&tcomps, &refuse, false)?;
                if target != path {
                    self.clear(&path, false)?;
                    fs::hard_link(&target, &path).map_err(werr(&path))?;
                }
                self.stats.entries += 1;
                return Ok(());
            }
            b'2' => {
                self.clear(&path, false)?;
                symlink(OsStr::from_bytes(&h.link), &path).map_err(werr(&path))?;
                owner_xattrs(&path, &h, xattrs)?;
            }
            b'5' => {
                if !self.clear(&path, true)? {
                    fs::DirBuilder::new().mode(0o755).create(&path).map_err(werr(&path))?;
                }
                owner_xattrs(&path, &h, xattrs)?;
                self.dirs.push((path, h.mode, h.mtime));
                self.stats.entries += 1;
                return Ok(());
            }
            _ => {
                let (fmt, dev) = match kind {
                    b'3' => (libc::S_IFCHR, libc::makedev(h.dev.0, h.dev.1)),
                    b'4' => (libc::S_IFBLK, libc::makedev(h.dev.0, h.dev.1)),
                    _ => (libc::S_IFIFO, 0),
                };
                self.clear(&path, false)?;
                mknod(&path, fmt | h.mode, dev).map_err(werr(&path))?;
                owner_xattrs(&path, &h, xattrs)?;
                fs::set_permissions(&path, fs::Permissions::from_mode(h.mode)).map_err(werr(&path))?;
            }
        }
        set_mtime(&path, h.mtime).map_err(werr(&path))?;
        self.stats.entries += 1;
        Ok(())
    }

    /// Walks `comps` under dest by lstat, never through a symlink. With `create`, every
    /// component is a directory, created 0755 if missing; without, the path must already
    /// exist and end in a non-directory (a hardlink target).
    fn walk(
        &self,
        comps: &[&[u8]],
        refuse: &dyn Fn(String) -> UnpackError,
        create: bool,
    ) -> Result<PathBuf, UnpackError> {
        let mut path = self.dest.clone();
        for (i, c) in comps.iter().enumerate() {
            path.push(OsStr::from_bytes(c));
            let rel = shown(&comps[..=i]);
            let last = i + 1 == comps.len();
            match fs::symlink_metadata(&path) {
                Ok(m) if !create && last && m.is_dir() => {
                    return Err(refuse(format!("hardlink target {rel} is a directory")))
                }
                Ok(m) if m.is_dir() || (!create && last) => {}
                Ok(m) if m.file_type().is_symlink() => return Err(refuse(format!("parent {rel} is a symlink"))),
                Ok(_) => return Err(refuse(format!("parent {rel} is not a directory"))),
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    // 0755 whatever the umask: a 0700 /usr would break non-root containers.
                    fs::DirBuilder::new().create(&path).map_err(werr(&path))?;
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).map_err(werr(&path))?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(refuse(format!("hardlink target {rel} is not in the layer")))
                }
                Err(e) => return Err(werr(&path)(e)),
            }
        }
        Ok(path)
    }

    /// Removes whatever is at `path` (not following a symlink), except a directory that
    /// `keep_dir` re-declares; returns whether such a directory was kept.
    fn clear(&mut self, path: &Path, keep_dir: bool) -> Result<bool, UnpackError> {
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(werr(path)(e)),
            Ok(m) if m.is_dir() && keep_dir => Ok(true),
            Ok(m) if m.is_dir() => {
                fs::remove_dir_all(path).map_err(werr(path))?;
                self.dirs.retain(|(d, ..)| !d.starts_with(path));
                Ok(false)
            }
            Ok(_) => fs::remove_file(path).map(|()| false).map_err(werr(path)),
        }
    }
}

/// Owner, then xattrs (chown may clear `security.capability`, and the mode's setuid bits).
fn owner_xattrs(path: &Path, h: &Header, xattrs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), UnpackError> {
    lchown(path, Some(h.uid), Some(h.gid)).map_err(werr(path))?;
    for (name, value) in xattrs.iter().filter(|(n, _)| !n.starts_with(b"trusted.overlay.")) {
        match lsetxattr(path, name, value) {
            // A filesystem without xattrs: containerd logs and goes on.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
            r => r.map_err(werr(path))?,
        }
    }
    Ok(())
}

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn mknod(path: &Path, mode: libc::mode_t, dev: libc::dev_t) -> io::Result<()> {
    let p = cpath(path)?;
    // SAFETY: `p` is a NUL-terminated string that outlives the call.
    check(unsafe { libc::mknod(p.as_ptr(), mode, dev) })
}

fn lsetxattr(path: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    let (p, n) = (cpath(path)?, CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?);
    // SAFETY: `p` and `n` are NUL-terminated and outlive the call; `value` is readable for its length.
    check(unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) })
}

/// Sets atime and mtime to `mtime` on `path` itself, not a symlink's target.
fn set_mtime(path: &Path, (secs, nanos): (i64, i64)) -> io::Result<()> {
    let p = cpath(path)?;
    let ts = libc::timespec { tv_sec: secs as libc::time_t, tv_nsec: nanos as libc::c_long };
    let times = [ts, ts];
    // SAFETY: `p` is NUL-terminated and `times` holds the two timespecs utimensat reads.
    check(unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    /// A tiny tar writer: ustar headers with checksums, PAX and GNU long-name members.
    #[derive(Default)]
    struct Tar(Vec<u8>);

    struct H<'a> {
        name: &'a [u8],
        kind: u8,
        mode: u32,
        uid: u32,
        mtime: u64,
        link: &'a [u8],
        dev: (u32, u32),
    }

    fn h(name: &str, kind: u8) -> H<'_> {
        H { name: name.as_bytes(), kind, mode: 0o644, uid: 0, mtime: 1_600_000_000, link: b"", dev: (0, 0) }
    }

    /// Octal, or GNU base-256 when the value does not fit.
    fn octal(field: &mut [u8], v: u64) {
        let s = format!("{v:0w$o}\0", w = field.len() - 1);
        if s.len() == field.len() {
            field.copy_from_slice(s.as_bytes());
        } else {
            field.fill(0);
            let n = field.len();
            field[n - 8..].copy_from_slice(&v.to_be_bytes());
            field[0] = 0x80;
        }
    }

    fn header(h: &H, size: u64) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        let n = h.name.len().min(100);
        b[..n].copy_from_slice(&h.name[..n]);
        octal(&mut b[100..108], h.mode.into());
        octal(&mut b[108..116], h.uid.into());
        octal(&mut b[116..124], h.uid.into());
        octal(&mut b[124..136], size);
        octal(&mut b[136..148], h.mtime);
        b[156] = h.kind;
        b[157..157 + h.link.len().min(100)].copy_from_slice(&h.link[..h.link.len().min(100)]);
        b[257..265].copy_from_slice(b"ustar\x0000");
        octal(&mut b[329..337], h.dev.0.into());
        octal(&mut b[337..345], h.dev.1.into());
        b[148..156].fill(b' ');
        let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
        b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        b
    }

    impl Tar {
        fn add(&mut self, h: &H, data: &[u8]) -> &mut Self {
            self.0.extend_from_slice(&header(h, data.len() as u64));
            self.0.extend_from_slice(data);
            self.0.resize(self.0.len().div_ceil(BLOCK) * BLOCK, 0);
            self
        }
        fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Self {
            self.add(&H { mode, ..h(name, b'0') }, data)
        }
        fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
            self.add(&H { mode, ..h(name, b'5') }, b"")
        }
        fn link(&mut self, name: &str, kind: u8, target: &str) -> &mut Self {
            self.add(&H { link: target.as_bytes(), ..h(name, kind) }, b"")
        }
        fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
            let mut data = Vec::new();
            for (k, v) in records {
                let body = k.len() + v.len() + 3;
                let mut len = body + 1;
                while len != body + len.to_string().len() {
                    len = body + len.to_string().len();
                }
                data.extend_from_slice(format!("{len} {k}=").as_bytes());
                data.extend_from_slice(v);
                data.push(b'\n');
            }
            self.add(&h("PaxHeaders/x", b'x'), &data)
        }
        fn gnu_long(&mut self, kind: u8, name: &str) -> &mut Self {
            self.add(&h("././@LongLink", kind), &[name.as_bytes(), b"\0"].concat())
        }
        fn end(&mut self) -> Vec<u8> {
            self.0.extend_from_slice(&[0; 2 * BLOCK]);
            std::mem::take(&mut self.0)
        }
    }

    fn unpack(tar: &[u8]) -> (tempfile::TempDir, PathBuf, Result<UnpackStats, UnpackError>) {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("dest");
        fs::create_dir(&dest).unwrap();
        let r = unpack_layer(tar, &dest);
        (tmp, dest, r)
    }

    fn getxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
        let (p, n) = (cpath(path).unwrap(), CString::new(name).unwrap());
        let mut buf = vec![0u8; 256];
        // SAFETY: NUL-terminated strings; `buf` is writable for its length.
        let rc = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        buf.truncate(usize::try_from(rc).ok()?);
        Some(buf)
    }

    #[test]
    fn regular_files_with_modes_owner_mtime_and_content() {
        let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let tar = Tar::default()
            .file("./a.txt", 0o640, b"hello")
            .add(&H { mode: 0o4755, uid: 3_000_000, mtime: 1234567890, ..h("/bin/run", b'0') }, &big)
            .end();
        let (_t, dest, r) = unpack(&tar);
        assert_eq!(r.unwrap(), UnpackStats { entries: 2, bytes: 200_005, whiteouts: 0 });
        assert_eq!(fs::read(dest.join("a.txt")).unwrap(), b"hello");
        assert_eq!(fs::metadata(dest.join("a.txt")).unwrap().mode() & 0o7777, 0o640);
        let m = fs::metadata(dest.join("bin/run")).unwrap();
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid(), m.mtime()), (0o4755, 3_000_000, 3_000_000, 1234567890));
        assert_eq!(fs::read(dest.join("bin/run")).unwrap(), big);
    }

    #[test]
    fn nested_dirs_created_implicitly_and_paths_normalised() {
        let tar = Tar::default().file("a//b/./c/file", 0o600, b"x").dir("./", 0o700).end();
        let (_t, dest, r) = unpack(&tar);
        r.unwrap();
        for d in ["a", "a/b", "a/b/c"] {
            let m = fs::symlink_metadata(dest.join(d)).unwrap();
            assert!(m.is_dir() && m.mode() & 0o7777 == 0o755, "{d}");
        }
        assert_eq!(fs::read(dest.join("a/b/c/file")).unwrap(), b"x");
    }

    #[test]
    fn symlink_stored_not_followed_and_hardlink_shares_inode() {
        let tar = Tar::default()
            .link("sh", b'2', "/bin/busybox")
            .file("orig", 0o644, b"o")
            .link("copy", b'1', "./orig")
            .end();
        let (_t, dest, r) = unpack(&tar);
        assert_eq!(r.unwrap().entries, 3);
        assert_eq!(fs::read_link(dest.join("sh")).unwrap(), Path::new("/bin/busybox"));
        let (a, b) = (fs::metadata(dest.join("orig")).unwrap(), fs::metadata(dest.join("copy")).unwrap());
        assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    }

    #[test]
    fn devices_and_fifos() {
        let tar = Tar::default()
            .add(&H { dev: (1, 3), mode: 0o666, ..h("dev/null", b'3') }, b"")
            .add(&h("fifo", b'6'), b"")
            .end();
        let (_t, dest, r) = unpack(&tar);
        r.unwrap();
        let m = fs::symlink_metadata(dest.join("dev/null")).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!((m.rdev(), m.mode() & 0o7777), (libc::makedev(1, 3), 0o666));
        assert!(fs::symlink_metadata(dest.join("fifo")).unwrap().file_type().is_fifo());
    }

    #[test]
    fn whiteouts_become_char_devices_and_opaque_marker_an_xattr() {
        let tar = Tar::default()
            .file(".wh.foo", 0o644, b"")
            .file("sub/.wh.bar", 0o644, b"")
            .dir("dir", 0o755)
            .file("dir/.wh..wh..opq", 0o644, b"")
            .file("new/.wh..wh..opq", 0o644, b"")
            .file(".wh..wh.plnk/1.2", 0o644, b"aufs")
            .end();
        let (_t, dest, r) = unpack(&tar);
        assert_eq!(r.unwrap(), UnpackStats { entries: 5, bytes: 0, whiteouts: 4 });
        for w in ["foo", "sub/bar"] {
            let m = fs::symlink_metadata(dest.join(w)).unwrap();
            assert!(m.file_type().is_char_device() && m.rdev() == 0, "{w}");
        }
        assert!(!dest.join(".wh.foo").exists() && !dest.join("dir/.wh..wh..opq").exists());
        assert!(!dest.join(".wh..wh.plnk").exists() && !dest.join(".wh.plnk").exists());
        assert_eq!(getxattr(&dest.join("dir"), OPAQUE_XATTR).as_deref(), Some(&b"y"[..]));
        assert_eq!(getxattr(&dest.join("new"), OPAQUE_XATTR).as_deref(), Some(&b"y"[..]));
    }

    #[test]
    fn pax_long_path_xattr_mtime_and_gnu_long_names() {
        let long = format!("{}/{}/file.txt", "d".repeat(60), "e".repeat(60));
        let target = format!("/{}", "t".repeat(150));
        let gnu = format!("{}/gnu-file", "g".repeat(120));
        let tar = Tar::default()
            .pax(&[("path", long.as_bytes()), ("mtime", b"1700000000.25"), ("SCHILY.xattr.user.k", b"v\0w")])
            .file("truncated", 0o644, b"pax")
            .gnu_long(b'L', &gnu)
            .file("truncated", 0o644, b"gnu")
            .gnu_long(b'L', "linkname-that-is-long")
            .gnu_long(b'K', &target)
            .link("x", b'2', "short")
            .add(&h("global", b'g'), b"10 a=bcde\n")
            .end();
        let (_t, dest, r) = unpack(&tar);
        assert_eq!(r.unwrap().entries, 3);
        assert_eq!(fs::read(dest.join(&long)).unwrap(), b"pax");
        assert_eq!(fs::metadata(dest.join(&long)).unwrap().mtime_nsec(), 250_000_000);
        assert_eq!(getxattr(&dest.join(&long), "user.k").as_deref(), Some(&b"v\0w"[..]));
        assert_eq!(fs::read(dest.join(&gnu)).unwrap(), b"gnu");
        assert_eq!(fs::read_link(dest.join("linkname-that-is-long")).unwrap(), Path::new(&target));
        assert!(!dest.join("truncated").exists());
    }

    #[test]
    fn later_entries_replace_earlier_ones_without_following_symlinks() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        let tar = Tar::default()
            .file("x", 0o644, b"one")
            .file("x", 0o600, b"two")
            .file("d/child", 0o644, b"c")
            .file("d", 0o644, b"now a file")
            .link("s", b'2', victim.to_str().unwrap())
            .file("s", 0o644, b"replaced")
            .end();
        let (_t, dest, r) = unpack(&tar);
        r.unwrap();
        assert_eq!(fs::read(dest.join("x")).unwrap(), b"two");
        assert_eq!(fs::read(dest.join("d")).unwrap(), b"now a file");
        assert_eq!(fs::read(dest.join("s")).unwrap(), b"replaced");
        assert!(!victim.exists());
    }

    #[test]
    fn read_only_dir_still_gets_children_and_keeps_mode_and_mtime() {
        let tar = Tar::default()
            .add(&H { mode: 0o555, mtime: 1000, ..h("ro/", b'5') }, b"")
            .file("ro/child", 0o644, b"c")
            .end();
        let (_t, dest, r) = unpack(&tar);
        r.unwrap();
        assert_eq!(fs::read(dest.join("ro/child")).unwrap(), b"c");
        let m = fs::metadata(dest.join("ro")).unwrap();
        assert_eq!((m.mode() & 0o7777, m.mtime()), (0o555, 1000));
    }

    fn assert_refused(r: Result<UnpackStats, UnpackError>, entry: &str) {
        match r {
            Err(UnpackError::Refused { path, .. }) => assert!(path.contains(entry), "{path}"),
            other => panic!("expected a refusal of {entry}, got {other:?}"),
        }
    }

    #[test]
    fn dotdot_is_refused_and_nothing_escapes() {
        for name in ["../escape", "a/../../escape", "ok/../escape"] {
            let (t, dest, r) = unpack(&Tar::default().file(name, 0o644, b"bad").end());
            assert_refused(r, name);
            assert!(!t.path().join("escape").exists() && !dest.join("escape").exists());
        }
    }

    #[test]
    fn symlinked_parent_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        let tar = Tar::default()
            .link("evil", b'2', outside.path().to_str().unwrap())
            .file("evil/passwd", 0o644, b"root::0:0")
            .end();
        let (_t, _dest, r) = unpack(&tar);
        assert_refused(r, "evil/passwd");
        assert!(!outside.path().join("passwd").exists());
    }

    #[test]
    fn hardlink_outside_or_through_symlink_is_refused() {
        let tar = Tar::default().link("h", b'1', "../x").end();
        let (t, dest, r) = unpack(&tar);
        assert_refused(r, "h");
        assert!(!dest.join("h").exists() && !t.path().join("x").exists());
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), b"s").unwrap();
        let tar = Tar::default().link("o", b'2', outside.path().to_str().unwrap()).link("h", b'1', "o/secret").end();
        assert_refused(unpack(&tar).2, "h");
    }

    #[test]
    fn corrupt_checksum_and_truncation_are_errors() {
        let mut tar = Tar::default().file("a", 0o644, b"data").end();
        tar[0] = b'b';
        assert!(matches!(unpack(&tar).2, Err(UnpackError::Corrupt { offset: 0, .. })), "checksum");
        let tar = Tar::default().file("a", 0o644, &[7; 2000]).end();
        assert!(matches!(unpack(&tar[..1200]).2, Err(UnpackError::Read(_))), "mid-data");
        assert!(matches!(unpack(&tar[..700]).2, Err(UnpackError::Read(_))), "mid-block");
        assert!(matches!(unpack(&tar[..2560]).2, Err(UnpackError::Read(_))), "no end marker");
        unpack(&tar[..3072]).2.unwrap(); // EOF after one zero block is a proper end
    }

    #[test]
    fn parses_numbers_and_pax_times() {
        assert_eq!(number(b"0000644\0"), Ok(0o644));
        assert_eq!(number(b"  644 \0\0"), Ok(0o644));
        assert_eq!(number(&[0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]), Ok(1 << 32));
        assert!(number(&[0xff; 8]).is_err() && number(b"0009\0").is_err());
        assert_eq!(pax_time("-1.5"), Some((-2, 500_000_000)));
        assert_eq!(pax_time("12"), Some((12, 0)));
        assert_eq!(pax_time("1x"), None);
    }
}
