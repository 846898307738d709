//! Run a built-in image's program by hand, as `rkube image <argv...>` does:
//!
//! ```text
//! cargo run -p images --example run-image -- myweb
//! cargo run -p images --example run-image -- agnhost netexec --http-port=18080 --udp-port=18081
//! ```
//!
//! `RKUBE_IMAGES_BIND_IP=127.0.0.1` binds every server to that address instead
//! of 0.0.0.0; `RKUBE_IMAGES_MYWEB_PORTS=18080,18443` moves myweb's ports.
//! Listening addresses are printed on stderr as `LISTENING <proto> <addr>`.

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let bind_ip = std::env::var("RKUBE_IMAGES_BIND_IP").ok().and_then(|v| v.parse().ok());
    let myweb_ports = std::env::var("RKUBE_IMAGES_MYWEB_PORTS").ok().and_then(|v| {
        let (http, https) = v.split_once(',')?;
        Some((http.trim().parse().ok()?, https.trim().parse().ok()?))
    });
    let code = if bind_ip.is_none() && myweb_ports.is_none() {
        images::run(&argv)
    } else {
        let (tx, rx) = std::sync::mpsc::channel::<images::Listening>();
        std::thread::spawn(move || {
            for l in rx {
                eprintln!("LISTENING {} {}", l.proto, l.addr);
            }
        });
        images::run_with(&argv, &images::RunOptions { bind_ip, myweb_ports, listening: Some(tx) })
    };
    std::process::exit(code);
}
