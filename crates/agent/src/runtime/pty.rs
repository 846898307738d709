//! Pseudo-terminals for `kubectl exec -t`: the master side as an async
//! reader/writer on the tokio reactor, and a resize handle (TIOCSWINSZ).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The master side of a pty. Clones share the fd: use one clone to read and
/// another to write (each direction may be used by one task at a time).
#[derive(Clone)]
pub struct PtyMaster {
    fd: Arc<AsyncFd<OwnedFd>>,
}

/// Changes the window size of an exec's terminal.
#[derive(Clone)]
pub struct Resizer {
    fd: Arc<AsyncFd<OwnedFd>>,
}

impl Resizer {
    /// Set the window size (columns, rows); errors are logged, not returned.
    pub fn resize(&self, cols: u16, rows: u16) {
        if let Err(e) = self.try_resize(cols, rows) {
            tracing::debug!(error = %e, "resizing pty failed");
        }
    }

    pub fn try_resize(&self, cols: u16, rows: u16) -> io::Result<()> {
        set_size(&self.fd, cols, rows)
    }
}

fn set_size(fd: &AsyncFd<OwnedFd>, cols: u16, rows: u16) -> io::Result<()> {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize we own.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl PtyMaster {
    /// Open a new pty (80x24): the master, and the slave for the child's stdio.
    pub(crate) fn open() -> io::Result<(PtyMaster, OwnedFd)> {
        // SAFETY: plain libc pty calls; every fd is owned right after it is returned.
        unsafe {
            let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            if m < 0 {
                return Err(io::Error::last_os_error());
            }
            let master = OwnedFd::from_raw_fd(m);
            if libc::grantpt(m) < 0 || libc::unlockpt(m) < 0 {
                return Err(io::Error::last_os_error());
            }
            let s = libc::ioctl(m, libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            let slave = if s >= 0 {
                OwnedFd::from_raw_fd(s)
            } else {
                let mut name = [0 as libc::c_char; 128];
                if libc::ptsname_r(m, name.as_mut_ptr(), name.len()) != 0 {
                    return Err(io::Error::last_os_error());
                }
                let s = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
                if s < 0 {
                    return Err(io::Error::last_os_error());
                }
                OwnedFd::from_raw_fd(s)
            };
            let flags = libc::fcntl(m, libc::F_GETFL);
            if flags < 0 || libc::fcntl(m, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
                return Err(io::Error::last_os_error());
            }
            // The OwnedFd is neither replaced nor closed while the AsyncFd owns it.
            let pty = PtyMaster { fd: Arc::new(AsyncFd::register(master)?) };
            set_size(&pty.fd, 80, 24)?;
            Ok((pty, slave))
        }
    }

    /// A handle that changes the window size.
    pub fn resizer(&self) -> Resizer {
        Resizer { fd: self.fd.clone() }
    }

    /// Set the window size (columns, rows).
    pub fn resize(&self, cols: u16, rows: u16) -> io::Result<()> {
        set_size(&self.fd, cols, rows)
    }
}

impl AsyncRead for PtyMaster {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let res = guard.try_io(|fd| {
                // SAFETY: read(2) into the caller's initialized buffer.
                let n = unsafe { libc::read(fd.as_raw_fd(), unfilled.as_mut_ptr().cast(), unfilled.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match res {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // EIO: every slave fd is closed (the process ended) — end of stream.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for PtyMaster {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            let res = guard.try_io(|fd| {
                // SAFETY: write(2) from the caller's buffer.
                let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match res {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
