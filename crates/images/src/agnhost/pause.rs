//! `agnhost pause`, after upstream's `test/images/agnhost/pause/pause.go`:
//! print `Paused`, wait for SIGINT or SIGTERM, write `exiting because of signal
//! "<name>"` to the termination message file and stdout, and exit 1 (SIGINT) or
//! 2 (SIGTERM) — upstream's codes, so a deleted pod shows what it shows on a real
//! cluster. `--delay-shutdown=N` (from another upstream revision) sleeps N
//! seconds first.
//!
//! The termination message goes to `$TERMINATION_MESSAGE_PATH`, else to
//! `/dev/termination-log` only if that file exists (the node agent mounts it;
//! pods see the node's filesystem, where nothing should be created).

use super::command_flags;
use crate::util::{err_line, out_line, Flag, Ty};
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

const FLAGS: &[Flag] = &[Flag {
    name: "delay-shutdown",
    default: Ty::Int(0),
    usage: "Number of seconds to delay shutdown when receiving SIGTERM/SIGINT.",
}];

pub(super) async fn main(args: &[String]) -> i32 {
    let flags = match command_flags("pause", args, FLAGS) {
        Ok(f) => f,
        Err(code) => return code,
    };
    out_line("Paused");
    let (mut int, mut term) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            err_line(format_args!("registering signals: {e}"));
            return 1;
        }
    };
    out_line("Signals registered");
    let (name, code) = tokio::select! {
        _ = int.recv() => ("interrupt", 1),
        _ = term.recv() => ("terminated", 2),
    };
    let delay = flags.int("delay-shutdown");
    if delay > 0 {
        out_line(format_args!("Sleeping {delay} seconds before exit ..."));
        tokio::time::sleep(Duration::from_secs(delay.unsigned_abs())).await;
    }
    let message = format!("exiting because of signal {name:?}\n");
    let path = std::env::var("TERMINATION_MESSAGE_PATH").ok().filter(|p| !p.is_empty());
    let path = path
        .or_else(|| std::path::Path::new("/dev/termination-log").is_file().then(|| "/dev/termination-log".to_string()));
    if let Some(path) = path {
        let _ = std::fs::write(path, &message);
    }
    out_line(message.trim_end());
    code
}
