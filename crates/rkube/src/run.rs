//! Running the commands: logging, the datastore, the API server and the
//! controllers, readiness messages and clean shutdown on SIGTERM/SIGINT.

use crate::cli::{Cli, Command, LogFormat, ServerArgs};
use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::sync::Arc;

pub fn main(cli: Cli) -> ExitCode {
    init_logging(cli.log_format);
    match cli.command {
        Command::Version => {
            println!("rkube {} (Kubernetes {})", env!("CARGO_PKG_VERSION"), apiserver::KUBE_VERSION);
            ExitCode::SUCCESS
        }
        Command::Up(args) => serve(args, "rkube up"),
        Command::Server(args) => serve(args, "rkube server"),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn serve(args: ServerArgs, what: &str) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve_async(args, what)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve_async(args: ServerArgs, what: &str) -> Result<(), String> {
    let store: Arc<dyn store::Store> = match args.datastore.as_str() {
        "sqlite" => {
            std::fs::create_dir_all(&args.data_dir).map_err(|e| {
                format!("cannot create the data dir {}: {e} (choose another with --data-dir)", args.data_dir.display())
            })?;
            let path = args.data_dir.join("state.db");
            Arc::new(
                store::SqliteStore::open(&path)
                    .map_err(|e| format!("opening the datastore {}: {e}", path.display()))?,
            )
        }
        other if other.starts_with("etcd://") => {
            return Err(format!(
                "--datastore {other}: the etcd datastore is not available in this build yet; use --datastore sqlite"
            ))
        }
        other => return Err(format!("--datastore {other:?}: expected `sqlite` or `etcd://host:port,...`")),
    };
    let advertise = args.advertise_address.unwrap_or_else(default_advertise_address);
    let cfg = apiserver::Config {
        data_dir: args.data_dir.clone(),
        bind_address: args.bind_address,
        port: args.port,
        advertise_address: advertise,
        service_cidr: args.service_cidr,
        node_port_range: args.node_port_range.0..=args.node_port_range.1,
        compaction_interval: args.compaction_interval,
    };
    eprintln!(
        "{what}: starting the API server on {}:{} (data dir {})",
        args.bind_address,
        args.port,
        args.data_dir.display()
    );
    let api = apiserver::ApiServer::start(cfg, store).await.map_err(|e| e.to_string())?;
    let controllers = controllers::start(&api.kubeconfig).await.map_err(|e| format!("starting controllers: {e}"))?;
    println!(
        "{what}: ready. API server at {}; admin kubeconfig written to {}. Use it with: export KUBECONFIG={}; kubectl get svc",
        api.url,
        api.kubeconfig.display(),
        api.kubeconfig.display()
    );
    wait_for_signal().await;
    eprintln!("{what}: shutting down");
    controllers.shutdown().await;
    api.shutdown().await;
    eprintln!("{what}: stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The first up, non-loopback IPv4 address of this host.
fn default_advertise_address() -> IpAddr {
    let mut found = None;
    // SAFETY: getifaddrs fills a linked list we only read and then free.
    unsafe {
        let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut ifap) == 0 {
            let mut cur = ifap;
            while !cur.is_null() {
                let ifa = &*cur;
                let up = ifa.ifa_flags & (libc::IFF_UP as u32) != 0;
                if up && !ifa.ifa_addr.is_null() && i32::from((*ifa.ifa_addr).sa_family) == libc::AF_INET {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                    if !ip.is_loopback() && !ip.is_link_local() && found.is_none() {
                        found = Some(ip);
                    }
                }
                cur = ifa.ifa_next;
            }
            libc::freeifaddrs(ifap);
        }
    }
    IpAddr::V4(found.unwrap_or(Ipv4Addr::LOCALHOST))
}
