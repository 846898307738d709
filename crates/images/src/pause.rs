//! `registry.k8s.io/pause`, after upstream's `build/pause/linux/pause.c`:
//! `-v` prints the version; otherwise warn when not PID 1, sleep until SIGINT
//! or SIGTERM, print `Shutting down, got signal: <name>` on stderr and exit 0.
//! As PID 1 it also reaps zombies (SIGCHLD).

use crate::util::{err_line, out_line};
use tokio::signal::unix::{signal, SignalKind};

/// The pause version rkube stands in for.
const VERSION: &str = "v3.10";

pub(crate) async fn main(args: Vec<String>) -> i32 {
    if args.iter().any(|a| a.eq_ignore_ascii_case("-v")) {
        out_line(format_args!("pause.c {VERSION}"));
        return 0;
    }
    let pid1 = std::process::id() == 1;
    let (mut int, mut term) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(_), _) => return 1,
        (_, Err(_)) => return 2,
    };
    let mut child = if pid1 {
        match signal(SignalKind::child()) {
            Ok(c) => Some(c),
            Err(_) => return 3,
        }
    } else {
        None
    };
    // Printed once the handlers are in place (upstream prints it just before).
    if !pid1 {
        // Not an error because pause sees use outside of infra containers.
        err_line("Warning: pause should be the first process");
    }
    loop {
        tokio::select! {
            _ = int.recv() => {
                err_line("Shutting down, got signal: Interrupt");
                return 0;
            }
            _ = term.recv() => {
                err_line("Shutting down, got signal: Terminated");
                return 0;
            }
            Some(()) = async { match child.as_mut() { Some(c) => c.recv().await, None => None } } => reap(),
        }
    }
}

/// Collect every exited child (only done as PID 1).
fn reap() {
    // SAFETY: waitpid with a null status pointer and WNOHANG has no memory-safety requirements.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
}
