//! Container probes: httpGet, tcpSocket and exec, with upstream's timing and
//! thresholds (`pkg/kubelet/prober`).

use crate::runtime::{ExecSpec, Runtime, Sandbox};
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::time::{Duration, Instant, SystemTime};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    Success,
    Failure,
    /// Not due yet, or thresholds not crossed.
    Unchanged,
}

/// Per-container probe bookkeeping (one slot per probe kind).
#[derive(Default)]
pub struct State {
    slots: [Slot; 3],
}

#[derive(Default)]
struct Slot {
    next: Option<Instant>,
    successes: i32,
    failures: i32,
}

fn idx(k: ProbeKind) -> usize {
    match k {
        ProbeKind::Startup => 0,
        ProbeKind::Liveness => 1,
        ProbeKind::Readiness => 2,
    }
}

/// Run the probe if its period has elapsed; report a result once the
/// success/failure threshold is crossed.
pub async fn run_if_due(
    kind: ProbeKind,
    p: &Probe,
    state: &mut State,
    started: SystemTime,
    sandbox: &Sandbox,
    rt: &Runtime,
    c: &Container,
) -> ProbeResult {
    let slot = &mut state.slots[idx(kind)];
    let now = Instant::now();
    let since_start = SystemTime::now().duration_since(started).unwrap_or_default();
    if since_start < Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64) {
        return ProbeResult::Unchanged;
    }
    if slot.next.is_some_and(|n| n > now) {
        return ProbeResult::Unchanged;
    }
    slot.next = Some(now + Duration::from_secs(p.period_seconds.unwrap_or(10).max(1) as u64));
    let timeout = Duration::from_secs(p.timeout_seconds.unwrap_or(1).max(1) as u64);
    let ok = matches!(tokio::time::timeout(timeout, check(p, sandbox, rt, c)).await, Ok(true));
    if ok {
        slot.successes += 1;
        slot.failures = 0;
        let need = if kind == ProbeKind::Readiness { p.success_threshold.unwrap_or(1).max(1) } else { 1 };
        if slot.successes >= need {
            return ProbeResult::Success;
        }
    } else {
        slot.failures += 1;
        slot.successes = 0;
        if slot.failures >= p.failure_threshold.unwrap_or(3).max(1) {
            if kind != ProbeKind::Readiness {
                slot.failures = 0;
            }
            return ProbeResult::Failure;
        }
    }
    ProbeResult::Unchanged
}

fn port_of(port: &IntOrString, c: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => c
            .ports
            .as_ref()?
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

async fn check(p: &Probe, sandbox: &Sandbox, rt: &Runtime, c: &Container) -> bool {
    if let Some(h) = &p.http_get {
        let Some(port) = port_of(&h.port, c) else { return false };
        let host = h.host.clone().unwrap_or_else(|| sandbox.ip.to_string());
        let path = h.path.clone().unwrap_or_else(|| "/".into());
        return http_get(&host, port, &path).await;
    }
    if let Some(t) = &p.tcp_socket {
        let Some(port) = port_of(&t.port, c) else { return false };
        let host = t.host.clone().unwrap_or_else(|| sandbox.ip.to_string());
        return tokio::net::TcpStream::connect((host.as_str(), port)).await.is_ok();
    }
    if let Some(e) = &p.exec {
        let spec =
            ExecSpec { argv: e.command.clone().unwrap_or_default(), env: Vec::new(), tty: false, working_dir: None };
        return match rt.exec(sandbox, &spec).await {
            Ok(proc_) => proc_.wait().await.is_ok_and(|code| code == 0),
            Err(_) => false,
        };
    }
    false
}

/// A plain HTTP/1.1 GET: 200-399 is success (upstream).
async fn http_get(host: &str, port: u16, path: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect((host, port)).await else { return false };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nConnection: close\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let Ok(n) = s.read(&mut buf).await else { return false };
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok()).is_some_and(|c| (200..400).contains(&c))
}
