//! Running `ip`, `bridge` and `nft` (iproute2, nftables) with optional input.

use crate::PodNetError;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Runs `program args...`, feeding `stdin`; its stdout, or its stderr as the error.
pub(crate) async fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, PodNetError> {
    let command = format!("{program} {}", args.join(" "));
    let failed = |message: String| PodNetError::Command { command: command.clone(), message };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| failed(format!("{e} (is {program} installed?)")))?;
    if let (Some(input), Some(mut w)) = (stdin, child.stdin.take()) {
        w.write_all(input.as_bytes()).await.map_err(|e| failed(format!("writing its input: {e}")))?;
    }
    let out = child.wait_with_output().await.map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        let input = stdin.map(|s| format!(" (input: {})", s.trim().replace('\n', "; "))).unwrap_or_default();
        return Err(failed(format!("{}{input}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
