//! The lesson's web app over HTTP and HTTPS.

mod common;

use common::{hostname, http_get, https_get, start};

#[test]
fn myweb_answers_http_with_the_hostname() {
    let app = start(&["myweb", "Hello World!"], &["http", "https"]);
    for path in ["/", "/any/path?x=1"] {
        let (status, _, body, _) = http_get(app.addr("http"), path);
        assert_eq!(status, 200);
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(lines.len(), 6, "{body}");
        assert_eq!(lines[0], "Message: Hello World!");
        assert_eq!(lines[1], format!("Hostname: {}", hostname()));
        assert_eq!(lines[2], "Platform: linux");
        assert!(lines[3].strip_prefix("Uptime: ").and_then(|u| u.parse::<u64>().ok()).is_some(), "{body}");
        assert!(lines[4].strip_prefix("IP: ").and_then(|ip| ip.parse::<std::net::Ipv4Addr>().ok()).is_some(), "{body}");
        assert!(lines[5].starts_with("DNS: "), "{body}");
    }
}

#[test]
fn myweb_answers_https_with_a_self_signed_certificate() {
    let app = start(&["myweb"], &["http", "https"]);
    let (status, body, chain) = https_get(app.addr("https"), "/");
    assert_eq!(status, 200);
    assert_eq!(chain, 1, "one self-signed certificate");
    // No CMD given: node's process.argv[2] is undefined.
    assert!(body.starts_with("Message: undefined\n"), "{body}");
    assert!(body.contains(&format!("\nHostname: {}\n", hostname())), "{body}");
}

#[test]
fn myweb_runs_as_the_real_images_entrypoint_too() {
    let app = start(&["node", "index.js", "from args"], &["http"]);
    let (_, _, body, _) = http_get(app.addr("http"), "/");
    assert!(body.starts_with("Message: from args\n"), "{body}");
}
