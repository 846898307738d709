//! How the programs end on SIGTERM/SIGINT, end to end in a child process.
//!
//! The child is this test binary again, running only `child_entry` with the
//! program's argv in `IMAGES_TEST_CHILD_ARGV`: it runs the program with
//! `images::run_with` (servers on 127.0.0.1) and exits with its code, as
//! `rkube image` does; no other target has to be built first.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "IMAGES_TEST_CHILD_ARGV";

#[test]
fn child_entry() {
    let Ok(argv) = std::env::var(CHILD_ENV) else { return };
    let argv: Vec<String> = argv.split('\u{1f}').map(String::from).collect();
    let (tx, rx) = mpsc::channel::<images::Listening>();
    std::thread::spawn(move || {
        for l in rx {
            eprintln!("LISTENING {} {}", l.proto, l.addr);
        }
    });
    let opts = images::RunOptions {
        bind_ip: Some("127.0.0.1".parse().expect("ip")),
        myweb_ports: Some((0, 0)),
        listening: Some(tx),
    };
    std::process::exit(images::run_with(&argv, &opts));
}

struct Program {
    child: Child,
    lines: mpsc::Receiver<String>,
}

/// Start `argv` in a child and wait for an output line containing `ready`.
fn spawn(argv: &[&str], ready: &str) -> Program {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, argv.join("\u{1f}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let (tx, lines) = mpsc::channel();
    for stream in [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as _),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let mut program = Program { child, lines };
    program.expect_line(ready);
    program
}

impl Program {
    fn expect_line(&mut self, wanted: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(wanted) => return line,
                Ok(line) => seen.push(line),
                Err(_) => {
                    let _ = self.child.kill();
                    panic!("no line with {wanted:?}; output: {seen:#?}");
                }
            }
        }
    }

    fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("program did not exit");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn pause_image_exits_0_on_sigterm_and_sigint() {
    for (sig, name) in [(libc::SIGTERM, "Terminated"), (libc::SIGINT, "Interrupt")] {
        let mut p = spawn(&["pause"], "Warning: pause should be the first process");
        p.signal(sig);
        p.expect_line(&format!("Shutting down, got signal: {name}"));
        assert_eq!(p.wait().code(), Some(0));
    }
}

#[test]
fn agnhost_pause_exits_like_upstream() {
    for (sig, name, code) in [(libc::SIGTERM, "terminated", 2), (libc::SIGINT, "interrupt", 1)] {
        let mut p = spawn(&["agnhost", "pause"], "Signals registered");
        p.signal(sig);
        p.expect_line(&format!("exiting because of signal \"{name}\""));
        assert_eq!(p.wait().code(), Some(code));
    }
}

#[test]
fn myweb_exits_0_on_sigterm() {
    let mut p = spawn(&["myweb"], "LISTENING https");
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait().code(), Some(0));
}

#[test]
fn netexec_dies_by_sigterm_like_upstream() {
    let mut p = spawn(&["agnhost", "netexec", "--http-port=0", "--udp-port=0"], "LISTENING http");
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait().signal(), Some(libc::SIGTERM));
}
