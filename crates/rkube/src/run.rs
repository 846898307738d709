//! Running the commands: logging, the datastore, the API server and the
//! controllers, readiness messages and clean shutdown on SIGTERM/SIGINT.

use crate::cli::{AgentArgs, Cli, Command, LogFormat, NodeArgs, ServerArgs};
use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;

pub fn main(cli: Cli) -> ExitCode {
    // Pod processes: no logging setup, their output is the container's.
    match cli.command {
        Command::Image { argv } => return exit_code(run_image(&argv, cli.log_format)),
        Command::PodInfra { args } => return exit_code(agent::runtime::infra_main(&args)),
        Command::ContainerShim { args } => return exit_code(agent::runtime::shim_main(&args)),
        _ => {}
    }
    init_logging(cli.log_format, true);
    match cli.command {
        Command::Version => {
            println!("rkube {} (Kubernetes {})", env!("CARGO_PKG_VERSION"), apiserver::KUBE_VERSION);
            ExitCode::SUCCESS
        }
        Command::Up(args) if args.local.nodes != 1 => {
            let raw: Vec<String> = std::env::args().collect();
            report(crate::local::up(&args, &raw))
        }
        Command::Up(args) => block_on(serve_async(args.server, Some(args.node), "rkube up")),
        Command::Down(args) => report(crate::local::down(&args)),
        Command::Server(args) => block_on(serve_async(args, None, "rkube server")),
        Command::Agent(args) => block_on(agent_async(args)),
        Command::Token(args) => block_on(crate::token::run(args)),
        Command::Image { .. } | Command::PodInfra { .. } | Command::ContainerShim { .. } => ExitCode::FAILURE,
    }
}

/// A built-in image's program; the DNS add-ons come from the `dns` crate, with
/// their log lines on stderr (the container's log).
fn run_image(argv: &[String], log_format: LogFormat) -> i32 {
    let Some((builtin @ (images::Builtin::CoreDns | images::Builtin::NodeCache), args)) = images::program_of(argv)
    else {
        return images::run(argv);
    };
    images::prepare_process();
    // A container log is a file, not a terminal: no colour codes.
    init_logging(log_format, false);
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{}: starting the runtime: {e}", builtin.image());
            return 1;
        }
    };
    let args = args.to_vec();
    rt.block_on(async move {
        match builtin {
            images::Builtin::NodeCache => dns::program::node_cache(args).await,
            _ => dns::program::coredns(args).await,
        }
    })
}

/// The `--lb-pool` ranges, refused when they overlap the service CIDR, the pod CIDR or
/// (under `rkube up`) this node's own address.
fn lb_pools(args: &ServerArgs, node_ip: Option<IpAddr>) -> Result<Vec<apimachinery::metallb::AddressRange>, String> {
    let mut reserved = apimachinery::metallb::Reserved {
        nets: vec![
            (args.service_cidr.into(), "the service CIDR".to_string()),
            (args.cluster_cidr.into(), "the pod CIDR (--cluster-cidr)".to_string()),
        ],
    };
    if let Some(ip) = node_ip {
        reserved.nets.push((ipnet::IpNet::from(ip), "this node's address".to_string()));
    }
    apimachinery::metallb::parse_pool_flag(&args.lb_pools, &reserved)
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// `colour: false` turns colour codes off; otherwise tracing's default holds
/// (which honours `NO_COLOR`).
fn init_logging(format: LogFormat, colour: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let builder = if colour { builder } else { builder.with_ansi(false) };
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn report(r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn block_on(f: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve_async(args: ServerArgs, node: Option<NodeArgs>, what: &str) -> Result<(), String> {
    let advertise = args.advertise_address.unwrap_or_else(default_advertise_address);
    let lb_pools = lb_pools(&args, node.is_some().then_some(advertise))?;
    let datastore = crate::datastore::parse(&args.datastore)?;
    let etcd = crate::datastore::EtcdFlags {
        prefix: &args.etcd_prefix,
        ca_file: args.etcd_cafile.as_deref(),
        cert_file: args.etcd_certfile.as_deref(),
        key_file: args.etcd_keyfile.as_deref(),
    };
    // The PKI and kubeconfig stay in the data dir whichever the backend.
    std::fs::create_dir_all(&args.data_dir).map_err(|e| {
        format!("cannot create the data dir {}: {e} (choose another with --data-dir)", args.data_dir.display())
    })?;
    let store = crate::datastore::open(&datastore, &args.data_dir, etcd).await?;
    let pki_dir = args.pki_dir.clone().unwrap_or_else(|| args.data_dir.join("pki"));
    let cfg = apiserver::Config {
        data_dir: args.data_dir.clone(),
        pki_dir: args.pki_dir.clone(),
        bind_address: args.bind_address,
        port: args.port,
        advertise_address: advertise,
        service_cidr: args.service_cidr,
        cluster_cidr: args.cluster_cidr,
        lb_pools,
        node_port_range: args.node_port_range.0..=args.node_port_range.1,
        compaction_interval: args.compaction_interval,
        watch_cache: args.watch_cache,
        default_not_ready_toleration_seconds: args.default_not_ready_toleration_seconds,
        default_unreachable_toleration_seconds: args.default_unreachable_toleration_seconds,
    };
    eprintln!(
        "{what}: starting the API server on {}:{} (data dir {})",
        args.bind_address,
        args.port,
        args.data_dir.display()
    );
    let api = apiserver::ApiServer::start(cfg, store).await.map_err(|e| e.to_string())?;
    if args.api_only && node.is_some() {
        return Err("--api-only runs no controllers, so it cannot run a node: use `rkube server --api-only`".into());
    }
    if args.node_monitor_period.is_zero() || args.node_monitor_period >= args.node_monitor_grace_period {
        return Err(format!(
            "--node-monitor-period {:?} must be shorter than --node-monitor-grace-period {:?}",
            args.node_monitor_period, args.node_monitor_grace_period
        ));
    }
    // client-go's NewLeaderElector refuses the same combinations.
    if args.leader_elect_retry_period.is_zero()
        || args.leader_elect_retry_period >= args.leader_elect_renew_deadline
        || args.leader_elect_renew_deadline >= args.leader_elect_lease_duration
    {
        return Err(format!(
            "--leader-elect-retry-period {:?} < --leader-elect-renew-deadline {:?} < --leader-elect-lease-duration {:?} must hold",
            args.leader_elect_retry_period, args.leader_elect_renew_deadline, args.leader_elect_lease_duration
        ));
    }
    let controller_cfg = controllers::ControllerConfig {
        cluster_cidr: args.cluster_cidr,
        node_monitor: controllers::NodeMonitor {
            period: args.node_monitor_period,
            grace: args.node_monitor_grace_period,
            startup_grace: args.node_startup_grace_period,
        },
        // The CSR signer signs joining nodes' certificates with the cluster CA.
        signing: Some(controllers::certificates::Signing::new(pki_dir.clone())),
        root_ca: Some(api.ca_pem.clone()),
        ..Default::default()
    };
    let controllers = if args.api_only {
        None
    } else {
        Some(
            controllers::start_elected(&api.kubeconfig, controller_cfg, election(&args, advertise))
                .await
                .map_err(|e| format!("starting controllers: {e}"))?,
        )
    };
    let addon_settings = crate::addons::Settings {
        cluster_dns: Ipv4Addr::from(u32::from(args.service_cidr.network()).wrapping_add(10)),
        cluster_domain: args.cluster_domain.clone(),
        node_local_dns: node.as_ref().map(|n| n.node_local_dns).unwrap_or(dns::NODE_LOCAL_DNS_ADDR),
        upstream: args.upstream_dns.clone(),
        disabled: args.disable.clone(),
    };
    if !args.api_only {
        let client = controllers::client_from_kubeconfig(&api.kubeconfig).await.map_err(|e| e.to_string())?;
        let n = crate::addons::apply(&client, &addon_settings).await?;
        if n > 0 {
            eprintln!("{what}: applied the DNS add-ons in kube-system ({n} objects; leave them out with --disable coredns,nodelocaldns)");
        }
    }
    let mut dns_wait = None;
    let agent = match node {
        None => None,
        Some(node) => {
            let IpAddr::V4(node_ip) = advertise else {
                return Err(format!("--advertise-address {advertise}: the node agent needs an IPv4 address"));
            };
            let name = node.node_name.clone().unwrap_or_else(host_name);
            eprintln!("{what}: starting the node agent for node {name} ({node_ip})");
            let (cert, key, _ca) = apiserver::tls::issue_node_cert(&pki_dir, &name, &[IpAddr::V4(node_ip)])
                .map_err(|e| format!("issuing the node agent's certificate: {e}"))?;
            // The node talks to the API as system:node:<name>, not as the admin.
            let client = node_client(&args.data_dir, &pki_dir, &api, &name).await?;
            let proxy = agent::ProxySettings {
                cluster_cidr: args.cluster_cidr,
                service_cidr: args.service_cidr,
                min_sync_period: node.min_sync_period,
            };
            let node_local = !args.disable.contains(&crate::addons::Addon::Nodelocaldns);
            let mut cfg = agent_config(
                &node,
                name,
                node_ip,
                args.data_dir.join("agent"),
                cert,
                key,
                api.ca_pem.clone(),
                proxy,
                node_local,
            )?;
            cfg.dns.cluster_domain = args.cluster_domain.clone();
            let agent = agent::Agent::start(client, cfg).await.map_err(|e| format!("starting the node agent: {e}"))?;
            // Told as it happens, while the process already answers signals.
            let client = controllers::client_from_kubeconfig(&api.kubeconfig).await.map_err(|e| e.to_string())?;
            let (settings, who) = (addon_settings.clone(), what.to_string());
            dns_wait = Some(tokio::spawn(async move { crate::addons::wait_ready(&client, &settings, &who).await }));
            Some(agent)
        }
    };
    println!(
        "{what}: ready. API server at {}; admin kubeconfig written to {}. Use it with: export KUBECONFIG={}; kubectl get svc",
        api.url,
        api.kubeconfig.display(),
        api.kubeconfig.display()
    );
    match &api.node_token {
        Some(_) => println!(
            "{what}: to join another node: rkube agent --server https://{advertise}:{} --token \"$(cat {})\" \
             (copy the token from this file; it is readable by root only)",
            args.port,
            args.data_dir.join("node-token").display()
        ),
        None => eprintln!(
            "{what}: the join token in {} was revoked; make one with `rkube token create`",
            args.data_dir.join("node-token").display()
        ),
    }
    wait_for_signal().await;
    eprintln!("{what}: shutting down");
    if let Some(t) = dns_wait {
        t.abort();
    }
    if let Some(a) = agent {
        a.shutdown().await;
    }
    if let Some(c) = controllers {
        c.shutdown().await;
    }
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

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_lowercase())
        .unwrap_or_else(|_| "node".into())
}

/// The controllers' leader election: the Lease `kube-system/kube-controller-manager`,
/// as upstream's. The identity names this server (not this process), so a server
/// that restarts takes its own Lease back at once instead of waiting it out.
fn election(args: &ServerArgs, advertise: IpAddr) -> controllers::leader::Election {
    controllers::leader::Election {
        namespace: "kube-system".into(),
        name: "kube-controller-manager".into(),
        identity: format!("{}_{advertise}:{}", host_name(), args.port),
        timing: controllers::leader::Timing {
            lease_duration: args.leader_elect_lease_duration,
            renew_deadline: args.leader_elect_renew_deadline,
            retry_period: args.leader_elect_retry_period,
        },
    }
}

/// A client for the node agent of `rkube up`: a certificate for
/// `system:node:<name>` issued here (this machine holds the CA key).
async fn node_client(
    data_dir: &std::path::Path,
    pki_dir: &std::path::Path,
    api: &apiserver::ApiServer,
    name: &str,
) -> Result<kube::Client, String> {
    let ca = pki::Ca::load(pki_dir).map_err(|e| format!("loading the cluster CA: {e}"))?;
    let c = ca
        .issue_client(&pki::node_user(name), &["system:nodes"], std::time::Duration::from_secs(365 * 24 * 3600))
        .map_err(|e| format!("issuing the node's client certificate: {e}"))?;
    let kubeconfig = data_dir.join("agent").join("kubeconfig.yaml");
    if let Some(dir) = kubeconfig.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    apiserver::write_kubeconfig_cert(
        &kubeconfig,
        &api.url,
        &api.ca_pem,
        &pki::node_user(name),
        &c.cert_pem,
        &c.key_pem,
    )
    .map_err(|e| e.to_string())?;
    controllers::client_from_kubeconfig(&kubeconfig).await.map_err(|e| e.to_string())
}

/// The node's own resolv.conf, for pods with `dnsPolicy: Default`.
fn host_resolv_conf() -> String {
    std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
}

#[allow(clippy::too_many_arguments)]
fn agent_config(
    node: &NodeArgs,
    name: String,
    node_ip: Ipv4Addr,
    data_dir: std::path::PathBuf,
    cert: String,
    key: String,
    client_ca_pem: String,
    proxy: agent::ProxySettings,
    node_local_dns: bool,
) -> Result<agent::AgentConfig, String> {
    let self_exe = std::env::current_exe().map_err(|e| format!("finding the rkube binary: {e}"))?;
    if node.image_gc_low_threshold > node.image_gc_high_threshold {
        return Err(format!(
            "--image-gc-low-threshold {} must not be above --image-gc-high-threshold {}",
            node.image_gc_low_threshold, node.image_gc_high_threshold
        ));
    }
    if node.lb_renew_period.is_zero() || node.lb_renew_period >= node.lb_lease_duration {
        return Err(format!(
            "--lb-renew-period {:?} must be shorter than --lb-lease-duration {:?}",
            node.lb_renew_period, node.lb_lease_duration
        ));
    }
    Ok(agent::AgentConfig {
        node_name: name,
        node_ip,
        data_dir,
        kubelet_port: node.kubelet_port,
        self_exe,
        bridge: node.bridge.clone(),
        // The node-local cache (the nodelocaldns DaemonSet's pod) first; the
        // cluster DNS Service if the cache is down.
        dns: agent::DnsSettings {
            cluster_dns: if node_local_dns {
                vec![node.node_local_dns.to_string(), node.cluster_dns.to_string()]
            } else {
                vec![node.cluster_dns.to_string()]
            },
            cluster_domain: dns::DEFAULT_ZONE.to_string(),
            host_resolv_conf: host_resolv_conf(),
        },
        tls_cert_pem: cert,
        tls_key_pem: key,
        client_ca_pem,
        serving_cert_pin: None,
        proxy,
        l2: agent::L2Settings {
            enabled: !node.no_lb_announce,
            lease_duration: node.lb_lease_duration,
            renew: node.lb_renew_period,
        },
        node_lease_duration: std::time::Duration::from_secs(node.node_lease_duration_seconds),
        pod_network: (node.flannel_backend == "vxlan")
            .then(|| agent::PodNetworkSettings { iface: node.flannel_iface.clone() }),
        images: agent::ImageSettings {
            registry_config: node.registry_config.clone(),
            insecure_registries: node.insecure_registry.clone(),
            disable_default_endpoint: node.disable_default_registry_endpoint,
            prefer_builtin: node.builtin_images == "prefer",
            gc_high_percent: node.image_gc_high_threshold,
            gc_low_percent: node.image_gc_low_threshold,
        },
    })
}

/// `rkube agent`: a node joining a cluster from another machine with a join
/// token (see `join.rs`). Its serving certificate is self-signed (nodes may
/// only get client certificates), with its SHA-256 published on its Node,
/// which the API server pins for logs and exec.
async fn agent_async(args: AgentArgs) -> Result<(), String> {
    let node_ip = match args.node_ip {
        Some(ip) => ip,
        None => match default_advertise_address() {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(ip) => return Err(format!("{ip}: the node agent needs an IPv4 address; set --node-ip")),
        },
    };
    let name = args.node.node_name.clone().unwrap_or_else(host_name);
    std::fs::create_dir_all(&args.data_dir).map_err(|e| {
        format!("cannot create the data dir {}: {e} (choose another with --data-dir)", args.data_dir.display())
    })?;
    // Every component of the agent reaches the API servers through one local
    // proxy that fails over between them (k3s's agent load balancer).
    let servers: Vec<String> =
        args.server.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
    let mut addrs = Vec::new();
    for s in &servers {
        addrs.push(crate::server_lb::resolve(s).await?);
    }
    let listen = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0));
    let lb = crate::server_lb::ServerLb::start(listen, addrs).await?;
    let joined = crate::join::join_any(
        &servers,
        args.token.as_deref(),
        args.ca_file.as_deref(),
        &args.data_dir,
        &name,
        &lb.url(),
    )
    .await?;
    let client = controllers::client_from_kubeconfig(&joined.kubeconfig).await.map_err(|e| e.to_string())?;
    client.apiserver_version().await.map_err(|e| format!("cannot reach the API server at {}: {e}", args.server))?;
    tokio::spawn(crate::server_lb::follow_endpoints(lb.clone(), client.clone()));
    let (cert, key, pin) = apiserver::tls::self_signed_node_cert(&name, &[IpAddr::V4(node_ip)])
        .map_err(|e| format!("making the agent's serving certificate: {e}"))?;
    let proxy = agent::ProxySettings {
        cluster_cidr: args.cluster_cidr,
        service_cidr: args.service_cidr,
        min_sync_period: args.node.min_sync_period,
    };
    let mut cfg = agent_config(
        &args.node,
        name.clone(),
        node_ip,
        args.data_dir.join("agent"),
        cert,
        key,
        joined.ca_pem.clone(),
        proxy,
        !args.no_node_local_dns,
    )?;
    cfg.serving_cert_pin = Some(pin);
    cfg.dns.cluster_domain = args.cluster_domain.clone();
    eprintln!("rkube agent: joining {} as node {name} ({node_ip})", args.server);
    let agent = agent::Agent::start(client, cfg).await.map_err(|e| format!("starting the node agent: {e}"))?;
    println!("rkube agent: node {name} is Ready in the cluster at {}", args.server);
    wait_for_signal().await;
    eprintln!("rkube agent: shutting down");
    agent.shutdown().await;
    Ok(())
}
