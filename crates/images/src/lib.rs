//! The images rkube can run, chosen by image reference.
//!
//! rkube has no container engine and pulls no images (yet): an image reference
//! resolves either to a *built-in* program compiled into the rkube binary (the
//! lesson's web app `minjulee226/myweb`, Kubernetes' test image `agnhost`, the
//! `pause` image), or to *host*, for tool images (`busybox`, `nicolaka/netshoot`,
//! ...) whose command simply runs from the node's filesystem. Anything else is
//! refused with [`ImageError::NotAvailable`] (kubelet's `ErrImagePull`).
//!
//! The whole interface is [`resolve`], [`argv`] / [`host_argv`] (Kubernetes'
//! command/args rules), [`is_builtin_program`] and [`run`]; real OCI images can
//! later replace the built-in table behind the same functions.
//!
//! Dependencies: tokio, hyper, rustls/rcgen (ring) and libc only; no other rkube crate.

mod agnhost;
mod http;
mod myweb;
mod pause;
mod util;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// What an image reference runs as on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resolved {
    /// A program built into rkube ([`run`] executes it).
    Builtin(Builtin),
    /// A tool image: the pod's command runs from the node's filesystem
    /// (default command `sh`, see [`host_argv`]).
    Host,
}

/// The images built into rkube.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Builtin {
    /// `minjulee226/myweb`: the lesson's web app (HTTP 8080, HTTPS 8443).
    MyWeb,
    /// `registry.k8s.io/e2e-test-images/agnhost`: `netexec`, `serve-hostname`, `pause`.
    Agnhost,
    /// `registry.k8s.io/pause`: sleeps until signalled.
    Pause,
    /// `registry.k8s.io/coredns/coredns`: rkube's cluster DNS (`coredns -conf FILE`).
    /// Its program lives in the `dns` crate; the rkube binary runs it (see [`program_of`]).
    CoreDns,
    /// `registry.k8s.io/dns/k8s-dns-node-cache`: rkube's node-local DNS cache
    /// (`node-cache -localip IP ...`), also run by the rkube binary from the `dns` crate.
    NodeCache,
}

impl Builtin {
    /// The canonical image name (no tag).
    pub fn image(self) -> &'static str {
        match self {
            Builtin::MyWeb => "minjulee226/myweb",
            Builtin::Agnhost => "registry.k8s.io/e2e-test-images/agnhost",
            Builtin::Pause => "registry.k8s.io/pause",
            Builtin::CoreDns => "registry.k8s.io/coredns/coredns",
            Builtin::NodeCache => "registry.k8s.io/dns/k8s-dns-node-cache",
        }
    }

    /// The image's `ENTRYPOINT` and `CMD`.
    ///
    /// The real `minjulee226/myweb` is `ENTRYPOINT ["node", "index.js"]`,
    /// `CMD ["Hello World!"]` (the CMD is the `Message:` line of every answer);
    /// agnhost's Dockerfile has `ENTRYPOINT ["/agnhost"]`, `CMD ["pause"]`;
    /// pause is `ENTRYPOINT ["/pause"]`; coredns `ENTRYPOINT ["/coredns"]`; node-cache
    /// `ENTRYPOINT ["/node-cache"]`. Program names are given without the
    /// leading `/` (both spellings run, see [`is_builtin_program`]).
    pub fn entrypoint_cmd(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Builtin::MyWeb => (&["myweb"], &["Hello World!"]),
            Builtin::Agnhost => (&["agnhost"], &["pause"]),
            Builtin::Pause => (&["pause"], &[]),
            Builtin::CoreDns => (&["coredns"], &[]),
            Builtin::NodeCache => (&["node-cache"], &[]),
        }
    }
}

/// An image this node cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// The message kubelet shows for the pull failure (`ErrImagePull`): it names
    /// the images this node can run.
    #[error(
        "image {image:?} is not available on this node: rkube runs built-in images and tool images \
         (whose command runs from the node's filesystem) only; available: {}",
        available.join(", ")
    )]
    NotAvailable { image: String, available: Vec<&'static str> },
}

/// Built-in images: canonical name (after [`normalize`]) -> program. Old
/// registry names of the same images are accepted too.
const BUILTINS: &[(&str, Builtin)] = &[
    ("minjulee226/myweb", Builtin::MyWeb),
    ("registry.k8s.io/e2e-test-images/agnhost", Builtin::Agnhost),
    ("gcr.io/kubernetes-e2e-test-images/agnhost", Builtin::Agnhost),
    ("registry.k8s.io/pause", Builtin::Pause),
    ("registry.k8s.io/pause-amd64", Builtin::Pause),
    ("registry.k8s.io/coredns/coredns", Builtin::CoreDns),
    ("registry.k8s.io/coredns", Builtin::CoreDns),
    ("coredns/coredns", Builtin::CoreDns),
    ("registry.k8s.io/dns/k8s-dns-node-cache", Builtin::NodeCache),
    ("registry.k8s.io/k8s-dns-node-cache", Builtin::NodeCache),
];

/// Tool images whose commands run from the node's filesystem.
const HOST_IMAGES: &[&str] = &[
    "busybox",
    "alpine",
    "ubuntu",
    "debian",
    "centos",
    "fedora",
    "nicolaka/netshoot",
    "curlimages/curl",
    "radial/busyboxplus",
    "praqma/network-multitool",
    "wbitt/network-multitool",
    "infoblox/dnstools",
    "tutum/dnsutils",
    "registry.k8s.io/busybox",
    "registry.k8s.io/e2e-test-images/busybox",
    "registry.k8s.io/e2e-test-images/jessie-dnsutils",
    "gcr.io/kubernetes-e2e-test-images/dnsutils",
];

/// The images this node can run (canonical names, as listed in errors).
pub fn available_images() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for (name, _) in BUILTINS {
        let alias =
            matches!(*name, "registry.k8s.io/coredns" | "coredns/coredns" | "registry.k8s.io/k8s-dns-node-cache");
        if !name.starts_with("gcr.io/") && !name.ends_with("-amd64") && !alias {
            names.push(name);
        }
    }
    names.extend(HOST_IMAGES.iter().copied().filter(|n| !n.starts_with("gcr.io/")));
    names
}

/// The repository of an image reference, normalized the way the Docker
/// reference grammar reads it: digest (`@sha256:...`) and tag dropped,
/// `docker.io/`, `index.docker.io/` and `docker.io/library/` removed, and the
/// retired `k8s.gcr.io` / `gcr.io/google[-_]containers` names mapped to
/// `registry.k8s.io`.
pub fn normalize(image: &str) -> String {
    let name = image.split('@').next().unwrap_or_default();
    // A tag is a ':' after the last '/' (a ':' before it is a registry port).
    let name = match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => &name[..colon],
        _ => name,
    };
    let (domain, path) = match name.split_once('/') {
        Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => (first, rest),
        _ => ("docker.io", name),
    };
    match domain {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            path.strip_prefix("library/").filter(|p| !p.contains('/')).unwrap_or(path).to_string()
        }
        "k8s.gcr.io" => format!("registry.k8s.io/{path}"),
        "gcr.io" => match path.split_once('/') {
            Some(("google-containers" | "google_containers", rest)) => format!("registry.k8s.io/{rest}"),
            _ => format!("{domain}/{path}"),
        },
        _ => format!("{domain}/{path}"),
    }
}

/// Resolve an image reference (`minjulee226/myweb`, `minjulee226/myweb:latest`,
/// `docker.io/minjulee226/myweb:v1`, `registry.k8s.io/e2e-test-images/agnhost:2.52`,
/// `busybox`, `nicolaka/netshoot`, `alpine:3.20`, `registry.k8s.io/pause:3.10`, ...).
/// Tag and digest are ignored.
pub fn resolve(image: &str) -> Result<Resolved, ImageError> {
    let name = normalize(image.trim());
    if let Some((_, b)) = BUILTINS.iter().find(|(n, _)| *n == name) {
        return Ok(Resolved::Builtin(*b));
    }
    if HOST_IMAGES.contains(&name.as_str()) {
        return Ok(Resolved::Host);
    }
    Err(ImageError::NotAvailable { image: image.to_string(), available: available_images() })
}

/// Kubernetes' rule for a container's argv
/// (<https://kubernetes.io/docs/tasks/inject-data-application/define-command-argument-container/#notes>):
/// `command` replaces the image's ENTRYPOINT (and then the image's CMD is not
/// used), `args` replaces its CMD. `$(VAR)` expansion is kubelet's job and has
/// happened before this.
fn combine(entrypoint: &[&str], cmd: &[&str], command: &[String], args: &[String]) -> Vec<String> {
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match (command.is_empty(), args.is_empty()) {
        (false, _) => command.iter().chain(args).cloned().collect(),
        (true, false) => owned(entrypoint).into_iter().chain(args.iter().cloned()).collect(),
        (true, true) => owned(entrypoint).into_iter().chain(owned(cmd)).collect(),
    }
}

/// The argv a built-in image runs: its ENTRYPOINT+CMD when the pod gives no
/// command, combined with the pod's `command`/`args` by Kubernetes' rules.
/// Run it with [`run`] when [`is_builtin_program`] says so (a pod may also run,
/// say, `sh -c ...` in the agnhost image; that runs from the node's filesystem).
pub fn argv(b: Builtin, command: &[String], args: &[String]) -> Vec<String> {
    let (entrypoint, cmd) = b.entrypoint_cmd();
    combine(entrypoint, cmd, command, args)
}

/// The argv of a pulled image: its `Entrypoint` and `Cmd` combined with the
/// pod's `command`/`args` by the same rules.
pub fn image_argv(entrypoint: &[String], cmd: &[String], command: &[String], args: &[String]) -> Vec<String> {
    let e: Vec<&str> = entrypoint.iter().map(String::as_str).collect();
    let c: Vec<&str> = cmd.iter().map(String::as_str).collect();
    combine(&e, &c, command, args)
}

/// The argv of a [`Resolved::Host`] tool image: its command runs from the
/// node's filesystem; with neither command nor args it runs `sh`.
pub fn host_argv(command: &[String], args: &[String]) -> Vec<String> {
    combine(&[], &["sh"], command, args)
}

/// The program an argv names, by the basename of `argv[0]`: `myweb` (or the
/// real image's `node index.js`), `agnhost` / `agnhost-2`, `pause`, `coredns`,
/// `node-cache`; with the program's own arguments.
pub fn program_of(argv: &[String]) -> Option<(Builtin, &[String])> {
    program(argv)
}

fn program(argv: &[String]) -> Option<(Builtin, &[String])> {
    let first = argv.first()?;
    let base = first.rsplit('/').next().unwrap_or(first);
    match base {
        "myweb" => Some((Builtin::MyWeb, &argv[1..])),
        "node" if argv.get(1).is_some_and(|a| a == "index.js" || a == "/usr/src/app/index.js") => {
            Some((Builtin::MyWeb, &argv[2..]))
        }
        "agnhost" | "agnhost-2" => Some((Builtin::Agnhost, &argv[1..])),
        "pause" => Some((Builtin::Pause, &argv[1..])),
        "coredns" => Some((Builtin::CoreDns, &argv[1..])),
        "node-cache" => Some((Builtin::NodeCache, &argv[1..])),
        _ => None,
    }
}

/// Whether [`run`] can execute this argv (otherwise it names a program of the
/// node's filesystem, e.g. `["/bin/sh", "-c", ...]` in the agnhost image).
pub fn is_builtin_program(argv: &[String]) -> bool {
    program(argv).is_some()
}

/// Where a program listens (reported through [`RunOptions::listening`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listening {
    /// `"http"`, `"https"`, `"tcp"` or `"udp"`.
    pub proto: &'static str,
    pub addr: SocketAddr,
}

/// Knobs for embedding and tests; [`run`] uses the defaults.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Address every server binds to instead of `0.0.0.0` (tests use 127.0.0.1).
    pub bind_ip: Option<IpAddr>,
    /// myweb's (HTTP, HTTPS) ports instead of (8080, 8443); 0 picks free ports.
    pub myweb_ports: Option<(u16, u16)>,
    /// Told every listening socket once it is bound.
    pub listening: Option<std::sync::mpsc::Sender<Listening>>,
}

/// Run a built-in image's program in the current process: the node agent execs
/// `rkube image <argv...>` inside the pod's namespaces. Blocks until the
/// program exits and returns its exit code. SIGTERM/SIGINT dispositions are
/// reset to the default first, so each program reacts to them as upstream's
/// does (see the program modules).
pub fn run(argv: &[String]) -> i32 {
    util::reset_signal_dispositions();
    run_with(argv, &RunOptions::default())
}

/// Resets SIGTERM/SIGINT to their defaults, as [`run`] does, for a built-in
/// program that another crate provides (the DNS add-ons).
pub fn prepare_process() {
    util::reset_signal_dispositions();
}

/// [`run`] with [`RunOptions`] (binding to loopback in tests, free ports, ...),
/// and without touching signal dispositions.
pub fn run_with(argv: &[String], opts: &RunOptions) -> i32 {
    let Some((builtin, args)) = program(argv) else {
        let name = argv.first().map(String::as_str).unwrap_or("");
        util::err_line(format_args!("exec: {name:?}: executable file not found in the built-in images"));
        return 127;
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            util::err_line(format_args!("starting the runtime: {e}"));
            return 1;
        }
    };
    let args = args.to_vec();
    let code = rt.block_on(async move {
        match builtin {
            Builtin::MyWeb => myweb::main(args, opts).await,
            Builtin::Agnhost => agnhost::main(args, opts).await,
            Builtin::Pause => pause::main(args).await,
            Builtin::CoreDns | Builtin::NodeCache => {
                util::err_line(format_args!(
                    "{}: this program is part of rkube's dns crate; the rkube binary runs it (`rkube image {}`)",
                    builtin.image(),
                    builtin.entrypoint_cmd().0.join(" ")
                ));
                127
            }
        }
    });
    rt.shutdown_timeout(Duration::from_millis(200));
    code
}
