//! A real etcd cluster for store and control-plane tests: Debian's
//! `etcd-server`, one process per member, each on loopback ports of its own
//! or at an address inside a sandbox namespace. Members can be killed and
//! started again on their data; every member is killed on drop.

use crate::error::{io, Error, Result};
use crate::server::spawn_tied;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a member (or the cluster's quorum) may take to become healthy.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a member runs: the test's own network namespace (loopback, free
/// ports) or a sandbox namespace at `ip` (ports 2379/2380).
#[derive(Clone, Debug)]
pub enum Placement {
    Loopback,
    Netns { netns: String, ip: IpAddr },
}

#[derive(Debug)]
struct Member {
    name: String,
    placement: Placement,
    client_url: String,
    peer_url: String,
    /// Plain-HTTP `/health` and `/metrics`, whatever the client URL's TLS.
    metrics_url: String,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// An etcd cluster; see the module docs.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Member>,
    initial_cluster: String,
    extra_args: Vec<String>,
    _dir: tempfile::TempDir,
}

/// The etcd binary, if installed (`scripts/install-prereqs.sh` installs `etcd-server`).
pub fn etcd_binary() -> Option<PathBuf> {
    ["/usr/bin/etcd", "/usr/local/bin/etcd"].iter().map(PathBuf::from).find(|p| p.exists())
}

impl EtcdCluster {
    /// One member per placement, plain HTTP; returns once every member reports healthy.
    pub fn start(placements: &[Placement]) -> Result<EtcdCluster> {
        Self::start_with(placements, "http", &[])
    }

    /// [`EtcdCluster::start`] with extra etcd flags (e.g. TLS files); clients use
    /// `scheme` (`http` or `https`).
    pub fn start_with(placements: &[Placement], scheme: &str, extra: &[String]) -> Result<EtcdCluster> {
        // Loopback ports are free when chosen, not when bound: someone may take
        // one in between. Start again on other ports then.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::try_start(placements, scheme, extra) {
                Err(Error::Etcd(m)) if attempt < 4 && m.contains("address already in use") => continue,
                other => return other,
            }
        }
    }

    fn try_start(placements: &[Placement], scheme: &str, extra: &[String]) -> Result<EtcdCluster> {
        if etcd_binary().is_none() {
            return Err(Error::Etcd("etcd is not installed (scripts/install-prereqs.sh installs etcd-server)".into()));
        }
        let dir =
            tempfile::Builder::new().prefix("rkube-etcd-").tempdir().map_err(io("create a temporary directory"))?;
        // All loopback ports at once, each held until every one is chosen, so
        // none is handed out twice.
        let loopbacks = placements.iter().filter(|p| matches!(p, Placement::Loopback)).count();
        let held: Vec<std::net::TcpListener> = (0..loopbacks * 3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<std::io::Result<_>>()
            .map_err(io("choosing loopback ports"))?;
        let mut ports = Vec::new();
        for l in &held {
            ports.push(l.local_addr().map_err(io("choosing loopback ports"))?.port());
        }
        drop(held);
        let mut ports = ports.into_iter();
        let mut port = || ports.next().ok_or_else(|| Error::Etcd("ran out of chosen ports".into()));
        let mut members = Vec::new();
        for (i, p) in placements.iter().enumerate() {
            let (host, client, peer, metrics) = match p {
                Placement::Loopback => ("127.0.0.1".to_string(), port()?, port()?, port()?),
                Placement::Netns { ip, .. } => (ip.to_string(), 2379, 2380, 2381),
            };
            members.push(Member {
                name: format!("m{i}"),
                placement: p.clone(),
                client_url: format!("{scheme}://{host}:{client}"),
                peer_url: format!("http://{host}:{peer}"),
                metrics_url: format!("http://{host}:{metrics}"),
                data_dir: dir.path().join(format!("m{i}")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
            });
        }
        let initial_cluster =
            members.iter().map(|m| format!("{}={}", m.name, m.peer_url)).collect::<Vec<_>>().join(",");
        let mut cluster = EtcdCluster { members, initial_cluster, extra_args: extra.to_vec(), _dir: dir };
        for i in 0..cluster.members.len() {
            cluster.launch(i)?;
        }
        for i in 0..cluster.members.len() {
            cluster.wait_healthy(i)?;
        }
        Ok(cluster)
    }

    fn launch(&mut self, i: usize) -> Result<()> {
        let bin = etcd_binary().ok_or_else(|| Error::Etcd("etcd is not installed".into()))?;
        let m = &self.members[i];
        let mut cmd = match &m.placement {
            Placement::Loopback => Command::new(&bin),
            Placement::Netns { netns, .. } => crate::sandbox::netns_command(netns, &bin),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .map_err(io(format!("open {}", m.log.display())))?;
        let log2 = log.try_clone().map_err(io("dup the etcd log"))?;
        cmd.args(["--name", &m.name, "--data-dir"])
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &m.client_url, "--advertise-client-urls", &m.client_url])
            .args(["--listen-peer-urls", &m.peer_url, "--initial-advertise-peer-urls", &m.peer_url])
            .args(["--initial-cluster", &self.initial_cluster, "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "rkube-test", "--listen-metrics-urls", &m.metrics_url])
            // Quick elections, so a lost member costs the tests little time.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let child = spawn_tied(cmd).map_err(io(format!("start etcd member {}", m.name)))?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// Waits until member `i` answers `/health` with `true` (it has a leader).
    pub fn wait_healthy(&mut self, i: usize) -> Result<()> {
        let deadline = Instant::now() + HEALTHY_TIMEOUT;
        loop {
            let exited = match self.members[i].child.as_mut() {
                Some(child) => child.try_wait().map_err(io("wait for etcd"))?,
                None => None,
            };
            if let Some(status) = exited {
                self.members[i].child = None;
                let name = &self.members[i].name;
                return Err(Error::Etcd(format!("member {name} exited ({status}):\n{}", self.log_tail(i))));
            }
            if self.healthy(i) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Etcd(format!(
                    "member {} not healthy after {HEALTHY_TIMEOUT:?}:\n{}",
                    self.members[i].name,
                    self.log_tail(i)
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether member `i` says it is healthy (`curl` of its plain-HTTP `/health`).
    pub fn healthy(&self, i: usize) -> bool {
        let m = &self.members[i];
        let url = format!("{}/health", m.metrics_url);
        let mut cmd = match &m.placement {
            Placement::Loopback => Command::new("curl"),
            Placement::Netns { netns, .. } => crate::sandbox::netns_command(netns, "curl"),
        };
        cmd.args(["-s", "--max-time", "2", &url]).stdin(Stdio::null()).stderr(Stdio::null());
        matches!(cmd.output(), Ok(o) if String::from_utf8_lossy(&o.stdout).contains("\"health\":\"true\""))
    }

    /// The member that is the Raft leader now, if a live member says so
    /// (etcd's `/v3/maintenance/status` through its JSON gateway).
    pub fn leader(&self) -> Option<usize> {
        let field = |text: &str, name: &str| -> Option<String> {
            let at = text.find(&format!("\"{name}\":\""))? + name.len() + 4;
            Some(text[at..].split('"').next()?.to_string())
        };
        let mut ids = Vec::new();
        let mut leader = None;
        for m in &self.members {
            let url = format!("{}/v3/maintenance/status", m.client_url);
            let mut cmd = match &m.placement {
                Placement::Loopback => Command::new("curl"),
                Placement::Netns { netns, .. } => crate::sandbox::netns_command(netns, "curl"),
            };
            cmd.args(["-sk", "--max-time", "2", "-X", "POST", &url, "-d", "{}"]).stdin(Stdio::null());
            let text = cmd.output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
            ids.push(field(&text, "member_id"));
            if leader.is_none() {
                leader = field(&text, "leader");
            }
        }
        let leader = leader?;
        ids.iter().position(|id| id.as_deref() == Some(leader.as_str()))
    }

    /// Client URLs of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    /// The `--datastore` value naming every member (`etcd://` or `etcd+tls://`).
    pub fn datastore(&self) -> String {
        let tls = self.members.first().is_some_and(|m| m.client_url.starts_with("https://"));
        let hosts: Vec<&str> = self
            .members
            .iter()
            .map(|m| m.client_url.split_once("://").map(|(_, h)| h).unwrap_or(&m.client_url))
            .collect();
        format!("{}://{}", if tls { "etcd+tls" } else { "etcd" }, hosts.join(","))
    }

    /// SIGKILLs member `i` (its data stays for [`EtcdCluster::restart`]).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data and waits until it is healthy.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.kill(i);
        self.launch(i)?;
        self.wait_healthy(i)
    }

    /// The last lines of member `i`'s log.
    pub fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(&self.members[i].log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Member `i`'s data dir.
    pub fn data_dir(&self, i: usize) -> &Path {
        &self.members[i].data_dir
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
