//! The agent's way to the API servers when there are several, as k3s's agent
//! load balancer (`pkg/agent/loadbalancer`): a TCP proxy on loopback that
//! every component of the agent talks to. Each connection goes to the server
//! that answered last; when it cannot be reached the next one is tried, so the
//! agent carries on when a server dies. TLS passes through untouched: the
//! servers' certificates name 127.0.0.1, and the agent still checks them
//! against the cluster CA. The list starts from `--server` and grows with the
//! addresses of the `kubernetes` Endpoints (every live API server).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// How long one server may take to accept a connection before the next is tried.
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);

/// The servers, the one to try first at the front.
#[derive(Default)]
struct Servers {
    list: Vec<SocketAddr>,
}

/// A running proxy; see the module docs.
#[derive(Clone)]
pub struct ServerLb {
    servers: Arc<Mutex<Servers>>,
    local: SocketAddr,
}

fn lock(m: &Mutex<Servers>) -> std::sync::MutexGuard<'_, Servers> {
    // A list of addresses: a panic elsewhere cannot leave it half-written.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `host:port` of an `https://host:port` URL (port 443 when absent).
pub fn host_port_of(url: &str) -> Result<String, String> {
    let rest = url.strip_prefix("https://").ok_or_else(|| format!("--server {url:?}: expected https://HOST:PORT"))?;
    let hostport = rest.trim_end_matches('/');
    if hostport.is_empty() || hostport.contains('/') {
        return Err(format!("--server {url:?}: expected https://HOST:PORT"));
    }
    Ok(if hostport.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        hostport.to_string()
    } else {
        format!("{hostport}:443")
    })
}

/// The address of an `https://host:port` URL (a name is looked up).
pub async fn resolve(url: &str) -> Result<SocketAddr, String> {
    let hp = host_port_of(url)?;
    if let Ok(a) = hp.parse() {
        return Ok(a);
    }
    let first = tokio::net::lookup_host(hp.as_str())
        .await
        .map_err(|e| format!("--server {url:?}: cannot resolve {hp}: {e}"))?
        .next();
    first.ok_or_else(|| format!("--server {url:?}: {hp} has no address"))
}

impl ServerLb {
    /// Listens on `listen` (port 0: any free port) and proxies to `servers`.
    pub async fn start(listen: SocketAddr, servers: Vec<SocketAddr>) -> Result<ServerLb, String> {
        let listener =
            TcpListener::bind(listen).await.map_err(|e| format!("the agent's API server proxy on {listen}: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        let lb = ServerLb { servers: Arc::new(Mutex::new(Servers { list: servers })), local };
        let me = lb.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((conn, _)) => {
                        let me = me.clone();
                        tokio::spawn(async move { me.relay(conn).await });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "API server proxy: accept");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(lb)
    }

    /// `https://127.0.0.1:PORT`: what the agent's clients use.
    pub fn url(&self) -> String {
        format!("https://{}", self.local)
    }

    /// The servers, the one used now first.
    pub fn servers(&self) -> Vec<SocketAddr> {
        lock(&self.servers).list.clone()
    }

    /// Adds servers not known yet (at the end: the one in use stays first).
    pub fn learn(&self, addrs: &[SocketAddr]) {
        let mut s = lock(&self.servers);
        for a in addrs {
            if !s.list.contains(a) {
                tracing::info!(server = %a, "API server proxy: learned a server");
                s.list.push(*a);
            }
        }
    }

    async fn dial(&self) -> Option<TcpStream> {
        let candidates = self.servers();
        for (i, addr) in candidates.iter().enumerate() {
            match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    if i > 0 {
                        tracing::warn!(server = %addr, "API server proxy: switched to another server");
                        let mut s = lock(&self.servers);
                        if let Some(pos) = s.list.iter().position(|a| a == addr) {
                            let a = s.list.remove(pos);
                            s.list.insert(0, a);
                        }
                    }
                    let _ = stream.set_nodelay(true);
                    return Some(stream);
                }
                Ok(Err(e)) => tracing::debug!(server = %addr, error = %e, "API server proxy: cannot connect"),
                Err(_) => tracing::debug!(server = %addr, "API server proxy: connect timed out"),
            }
        }
        None
    }

    async fn relay(&self, mut client: TcpStream) {
        let Some(mut upstream) = self.dial().await else {
            tracing::warn!(servers = ?self.servers(), "API server proxy: no server can be reached");
            return;
        };
        let _ = client.set_nodelay(true);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
}

/// Keeps `lb` knowing every live API server, from the `kubernetes` Endpoints.
pub async fn follow_endpoints(lb: ServerLb, client: kube::Client) {
    use k8s_openapi::api::core::v1::Endpoints;
    let api: kube::Api<Endpoints> = kube::Api::namespaced(client, "default");
    loop {
        match api.get_opt("kubernetes").await {
            Ok(Some(ep)) => {
                let mut addrs = Vec::new();
                for subset in ep.subsets.unwrap_or_default() {
                    let port = subset.ports.unwrap_or_default().first().map(|p| p.port).unwrap_or(6443);
                    for a in subset.addresses.unwrap_or_default() {
                        if let (Ok(ip), Ok(port)) = (a.ip.parse(), u16::try_from(port)) {
                            addrs.push(SocketAddr::new(ip, port));
                        }
                    }
                }
                lb.learn(&addrs);
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "API server proxy: reading the kubernetes endpoints"),
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn server_urls() {
        assert_eq!(resolve("https://10.0.0.1:6443").await, Ok("10.0.0.1:6443".parse().expect("addr")));
        assert_eq!(resolve("https://10.0.0.1/").await, Ok("10.0.0.1:443".parse().expect("addr")));
        assert_eq!(resolve("https://localhost:6443").await.map(|a| a.port()), Ok(6443));
        assert!(resolve("http://10.0.0.1:6443").await.is_err());
        assert!(resolve("https://10.0.0.1:6443/x").await.is_err());
    }

    /// Connections go to the first server that accepts; a dead one is skipped
    /// and the live one is used first from then on.
    #[tokio::test]
    async fn fails_over_to_a_live_server() -> Result<(), Box<dyn std::error::Error>> {
        let dead = TcpListener::bind("127.0.0.1:0").await?.local_addr()?; // closed again at once
        let live = TcpListener::bind("127.0.0.1:0").await?;
        let live_addr = live.local_addr()?;
        tokio::spawn(async move {
            while let Ok((mut c, _)) = live.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4];
                    if c.read_exact(&mut buf).await.is_ok() {
                        let _ = c.write_all(b"pong").await;
                    }
                });
            }
        });
        let lb = ServerLb::start("127.0.0.1:0".parse()?, vec![dead, live_addr]).await?;
        for _ in 0..2 {
            let mut c = TcpStream::connect(lb.local).await?;
            c.write_all(b"ping").await?;
            let mut buf = [0u8; 4];
            c.read_exact(&mut buf).await?;
            assert_eq!(&buf, b"pong");
        }
        assert_eq!(lb.servers(), vec![live_addr, dead]);
        lb.learn(&[dead, "127.0.0.1:1".parse()?]);
        assert_eq!(lb.servers().len(), 3);
        Ok(())
    }
}
