//! Connecting to a port inside a pod's network namespace, as the CRI runtime
//! does for `kubectl port-forward` (containerd `sandbox_portforward_linux.go`:
//! `localhost:<port>` over IPv4, then IPv6, from within the netns). The socket
//! is made on a short-lived thread that joined the netns; a socket stays in the
//! namespace it was created in, so the agent can use it from any thread.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Go's form of a dial error (`dial tcp4 127.0.0.1:80: connect: connection refused`).
fn dial_error(net: &str, addr: SocketAddr, e: &io::Error) -> String {
    let text = match e.raw_os_error() {
        // SAFETY: strerror returns a pointer to a static, NUL-terminated message.
        Some(code) => unsafe { std::ffi::CStr::from_ptr(libc::strerror(code)) }.to_string_lossy().to_lowercase(),
        None => e.to_string(),
    };
    format!("dial {net} {addr}: connect: {text}")
}

/// Connect to `localhost:port` inside `netns` (blocking: call from a thread of
/// its own, never from the async runtime's threads).
fn connect_in(netns: &OwnedFd, port: u16) -> Result<TcpStream, (String, String)> {
    // SAFETY: setns on this thread only; the thread ends after this call.
    if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
        let e = io::Error::last_os_error().to_string();
        return Err((format!("entering the network namespace: {e}"), e));
    }
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let e4 = match TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
        Ok(s) => return Ok(s),
        Err(e) => dial_error("tcp4", v4, &e),
    };
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    match TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT) {
        Ok(s) => Ok(s),
        Err(e) => Err((e4, dial_error("tcp6", v6, &e))),
    }
}

/// Connect to `localhost:port` in the pod whose netns is `netns` (`id` names
/// it in errors). The error is containerd's text.
pub(crate) async fn connect_localhost(netns: OwnedFd, id: String, port: u16) -> Result<tokio::net::TcpStream, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("portforward-dial".into())
        .spawn(move || {
            let _ = tx.send(connect_in(&netns, port));
        })
        .map_err(|e| format!("starting the dialing thread: {e}"))?;
    let stream = match rx.await {
        Ok(Ok(s)) => s,
        Ok(Err((e4, e6))) => {
            return Err(format!("failed to connect to localhost:{port} inside namespace {id:?}, IPv4: {e4} IPv6 {e6} "))
        }
        Err(_) => return Err("the dialing thread ended without an answer".into()),
    };
    stream.set_nonblocking(true).map_err(|e| format!("socket to the pod: {e}"))?;
    tokio::net::TcpStream::from_std(stream).map_err(|e| format!("socket to the pod: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connects_in_our_own_namespace_and_words_refusals_as_go() {
        let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let own = super::super::process::open_ns(std::process::id(), "net").unwrap();
        assert!(connect_localhost(own.try_clone().unwrap(), "self".into(), port).await.is_ok());
        drop(l);
        let err = connect_localhost(own, "self".into(), port).await.unwrap_err();
        let want = format!(
            "failed to connect to localhost:{port} inside namespace \"self\", IPv4: dial tcp4 127.0.0.1:{port}: connect: connection refused IPv6 dial tcp6 [::1]:{port}: connect: "
        );
        assert!(err.starts_with(&want), "{err}");
    }
}
