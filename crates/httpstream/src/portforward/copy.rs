//! Copying between a forwarded connection's client side and the pod's socket,
//! with containerd's end rule (`sandbox_portforward_linux.go`): when one
//! direction ends, the other gets up to a second to finish.

use bytes::Bytes;
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Grace for the second direction once the first has ended.
pub const LINGER: Duration = Duration::from_secs(1);

/// Pump data between `pod` and the client.
/// - `recv` yields what the client sent, and ends with the client's half;
/// - `send` forwards what the pod sent, failing once the client is gone;
/// - `cancelled` resolves when the client aborted the connection.
pub async fn pump<S, SF>(pod: TcpStream, mut recv: mpsc::Receiver<Bytes>, send: S, cancelled: impl Future<Output = ()>)
where
    S: Fn(Vec<u8>) -> SF,
    SF: Future<Output = bool>,
{
    let (mut pod_rd, mut pod_wr) = pod.into_split();
    let to_pod = async {
        while let Some(b) = recv.recv().await {
            if pod_wr.write_all(&b).await.is_err() {
                return;
            }
        }
        // The client's half ended: pass the half-close on.
        let _ = pod_wr.shutdown().await;
    };
    let from_pod = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match pod_rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if !send(buf[..n].to_vec()).await {
                        return;
                    }
                }
            }
        }
    };
    tokio::pin!(to_pod, from_pod, cancelled);
    tokio::select! {
        _ = &mut cancelled => {}
        _ = &mut to_pod => {
            tokio::select! { _ = &mut from_pod => {}, _ = &mut cancelled => {}, _ = tokio::time::sleep(LINGER) => {} }
        }
        _ = &mut from_pod => {
            tokio::select! { _ = &mut to_pod => {}, _ = &mut cancelled => {}, _ = tokio::time::sleep(LINGER) => {} }
        }
    }
}
