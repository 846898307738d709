//! Node and pod networking through iproute2's `ip`: the bridge with the pod
//! CIDR's gateway address, and per pod a veth pair whose host end is a bridge
//! port and whose pod end is `eth0` in the pod's network namespace.

use super::error::{io_ctx, RuntimeError};
use super::process::Joiner;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;
use std::path::Path;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Run `ip <args>`, optionally in another network namespace, feeding `stdin`.
async fn ip(args: &[&str], stdin: Option<&str>, netns: Option<RawFd>) -> Result<String, RuntimeError> {
    let command = format!("ip {}", args.join(" "));
    let mut cmd = Command::new("ip");
    cmd.args(args).stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    if let Some(fd) = netns {
        let joiner = Joiner {
            setsid: false,
            cgroup_procs: Vec::new(),
            namespaces: vec![(fd, libc::CLONE_NEWNET)],
            workdir: None,
            controlling_tty: false,
            user: None,
        };
        // SAFETY: the closure only makes async-signal-safe system calls.
        unsafe {
            cmd.pre_exec(move || joiner.apply());
        }
    }
    let mut child = cmd.spawn().map_err(io_ctx(format!("running {command}")))?;
    drop(cmd);
    if let (Some(input), Some(mut w)) = (stdin, child.stdin.take()) {
        w.write_all(input.as_bytes()).await.map_err(io_ctx(format!("writing to {command}")))?;
    }
    let out = child.wait_with_output().await.map_err(io_ctx(format!("running {command}")))?;
    if !out.status.success() {
        let stdin_note = stdin.map(|s| format!(" (input: {})", s.trim().replace('\n', "; "))).unwrap_or_default();
        return Err(RuntimeError::Command {
            command: format!("{command}{stdin_note}"),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether a link of this name exists (in the agent's network namespace).
pub(crate) async fn link_exists(name: &str) -> bool {
    ip(&["link", "show", "dev", name], None, None).await.is_ok()
}

fn write_sysctl(path: &str, value: &str) -> Result<(), RuntimeError> {
    std::fs::write(path, value).map_err(io_ctx(format!("writing {value} to {path}")))
}

/// The node's part: bridge up with the gateway address, IPv4 forwarding, and
/// bridged traffic through iptables/nftables (br_netfilter), all in the
/// agent's network namespace. With `mtu`, the bridge gets it (pods' veths are
/// created with it too, see [`add_veth`]).
pub(crate) async fn setup_node(
    bridge: &str,
    gateway: Ipv4Addr,
    prefix: u8,
    mtu: Option<u32>,
) -> Result<(), RuntimeError> {
    if !link_exists(bridge).await {
        ip(&["link", "add", "name", bridge, "type", "bridge"], None, None).await?;
    }
    let addr = format!("{gateway}/{prefix}");
    let mtu = mtu.map(|m| format!(" mtu {m}")).unwrap_or_default();
    ip(&["-batch", "-"], Some(&format!("addr replace {addr} dev {bridge}\nlink set dev {bridge}{mtu} up\n")), None)
        .await?;
    write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
    const BR_NF: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    if !Path::new(BR_NF).exists() {
        match Command::new("modprobe").arg("br_netfilter").stderr(Stdio::null()).status().await {
            Ok(s) if s.success() => {}
            other => tracing::warn!(result = ?other, "modprobe br_netfilter failed"),
        }
    }
    if Path::new(BR_NF).exists() {
        write_sysctl(BR_NF, "1")?;
    } else {
        tracing::warn!("br_netfilter is not available: traffic between pods on this node bypasses the firewall");
    }
    Ok(())
}

/// Create the pod's veth pair: `host` on the bridge (up), the peer created
/// directly as `eth0` inside the network namespace of `infra_pid`, both with
/// `mtu` if given (the pod network's: larger frames would not cross the overlay).
pub(crate) async fn add_veth(bridge: &str, host: &str, infra_pid: u32, mtu: Option<u32>) -> Result<(), RuntimeError> {
    let pid = infra_pid.to_string();
    let mtu = mtu.map(|m| m.to_string());
    let mut add = vec!["link", "add", "name", host];
    if let Some(m) = &mtu {
        add.extend(["mtu", m.as_str()]);
    }
    add.extend(["type", "veth", "peer", "name", "eth0"]);
    if let Some(m) = &mtu {
        add.extend(["mtu", m.as_str()]);
    }
    add.extend(["netns", pid.as_str()]);
    if let Err(e) = ip(&add, None, None).await {
        if !link_exists(host).await {
            return Err(e);
        }
        // A leftover of an earlier pod with this name: replace it.
        delete_link(host).await?;
        ip(&add, None, None).await?;
    }
    // Hairpin: a pod reaching itself through a Service (DNAT back to its own
    // port) needs the bridge to send the frame out the port it came in on
    // (kubelet's default --hairpin-mode=hairpin-veth).
    let script = format!(
        "link set dev {host} master {bridge}\nlink set dev {host} type bridge_slave hairpin on\nlink set dev {host} up\n"
    );
    ip(&["-batch", "-"], Some(&script), None).await?;
    Ok(())
}

/// Address `eth0` in the pod's network namespace and route via the gateway.
pub(crate) async fn configure_pod(
    netns: RawFd,
    ip_addr: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
) -> Result<(), RuntimeError> {
    let script = format!(
        "link set dev lo up\naddr add {ip_addr}/{prefix} dev eth0\nlink set dev eth0 up\nroute add default via {gateway} dev eth0\n"
    );
    ip(&["-batch", "-"], Some(&script), Some(netns)).await.map(|_| ())
}

/// Delete a link; a missing one is fine.
pub(crate) async fn delete_link(name: &str) -> Result<(), RuntimeError> {
    match ip(&["link", "del", "dev", name], None, None).await {
        Ok(_) => Ok(()),
        Err(e) if !link_exists(name).await => {
            tracing::trace!(error = %e, "link already gone");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Names of the bridge's ports.
pub(crate) async fn bridge_ports(bridge: &str) -> Result<Vec<String>, RuntimeError> {
    let out = ip(&["-o", "link", "show", "master", bridge], None, None).await?;
    Ok(out
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .collect())
}
