//! `registry.k8s.io/e2e-test-images/agnhost`: the subcommands Kubernetes'
//! network e2e tests use, after upstream's `test/images/agnhost` (flags,
//! responses, log lines and exit codes as there; Go's log lines go to stderr).

mod netexec;
mod pause;
mod serve_hostname;

use crate::util::{err_line, out_line, parse_flags, usage, Flag, Parsed};
use crate::RunOptions;

/// The agnhost version rkube stands in for.
const VERSION: &str = "2.52";

/// Subcommands built in here, with cobra's one-line descriptions.
const COMMANDS: &[(&str, &str)] = &[
    ("netexec", "Creates HTTP(S), UDP, and (optionally) SCTP servers with various endpoints"),
    ("pause", "Pauses the execution"),
    ("serve-hostname", "Serves the hostname"),
];

/// Upstream subcommands rkube does not build in.
const NOT_BUILT_IN: &[&str] = &[
    "audit-proxy",
    "connect",
    "crd-conversion-webhook",
    "dns-server-list",
    "dns-suffix",
    "entrypoint-tester",
    "etc-hosts",
    "fake-gitserver",
    "fake-registry-server",
    "grpc-health-checking",
    "guestbook",
    "http-echo",
    "inclusterclient",
    "liveness",
    "logs-generator",
    "mounttest",
    "mtlsclient",
    "mtlsserver",
    "net",
    "nettest",
    "no-snat-test",
    "no-snat-test-proxy",
    "porter",
    "port-forward-tester",
    "resource-consumer-controller",
    "tcp-reset",
    "test-webserver",
    "test-service-account-issuer-discovery",
    "webhook",
];

fn root_usage() -> String {
    let mut s = String::from("Usage:\n  app [command]\n\nAvailable Commands:\n");
    for (name, short) in COMMANDS {
        s.push_str(&format!("  {name:<16} {short}\n"));
    }
    s.push_str("\nFlags:\n  -h, --help      help for app\n      --version   version for app\n");
    s.push_str("\nUse \"app [command] --help\" for more information about a command.\n");
    s
}

pub(crate) async fn main(args: Vec<String>, opts: &RunOptions) -> i32 {
    let Some(command) = args.first() else {
        // cobra prints the help of the root command and succeeds.
        out_line(root_usage().trim_end());
        return 0;
    };
    let rest = &args[1..];
    match command.as_str() {
        "netexec" => netexec::main(rest, opts).await,
        "serve-hostname" => serve_hostname::main(rest, opts).await,
        "pause" => pause::main(rest).await,
        "-h" | "--help" | "help" => {
            out_line(root_usage().trim_end());
            0
        }
        "--version" | "-v" => {
            out_line(format_args!("app version {VERSION}"));
            0
        }
        other if NOT_BUILT_IN.contains(&other) => {
            err_line(format_args!(
                "Error: agnhost subcommand {other:?} is not built into rkube (built in: netexec, pause, serve-hostname)"
            ));
            1
        }
        other => {
            err_line(format_args!("Error: unknown command {other:?} for \"app\"\nRun 'app --help' for usage."));
            err_line(root_usage().trim_end());
            1
        }
    }
}

/// Parse a subcommand's flags as cobra does; `Err(code)` when the command must
/// end now (help printed: 0; bad flags or positional arguments: 1).
fn command_flags(command: &str, args: &[String], spec: &[Flag]) -> Result<Parsed, i32> {
    match parse_flags(args, spec) {
        Ok(p) if p.help => {
            out_line(usage(command, spec).trim_end());
            Err(0)
        }
        Ok(p) if !p.positional.is_empty() => {
            err_line(format_args!("Error: accepts at most 0 arg(s), received {}", p.positional.len()));
            err_line(usage(command, spec).trim_end());
            Err(1)
        }
        Ok(p) => Ok(p),
        Err(e) => {
            err_line(format_args!("Error: {e}"));
            err_line(usage(command, spec).trim_end());
            Err(1)
        }
    }
}
