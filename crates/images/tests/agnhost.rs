//! agnhost's netexec, serve-hostname and command line, in-process on 127.0.0.1.

mod common;

use common::{hostname, http_get, http_get_keepalive, http_raw, start, strings, udp_query, TIMEOUT};
use std::io::Read;

fn netexec(extra: &[&str]) -> common::Running {
    let mut argv = vec!["agnhost", "netexec", "--http-port=0", "--udp-port=0"];
    argv.extend_from_slice(extra);
    start(&argv, &["http", "udp"])
}

#[test]
fn netexec_serves_hostname_clientip_and_echo() {
    let app = netexec(&[]);
    let http = app.addr("http");
    let (status, headers, body, _) = http_get(http, "/hostname");
    assert_eq!((status, body.as_str()), (200, hostname().as_str()));
    assert_eq!(headers.get("content-type").map(String::as_str), Some("text/plain; charset=utf-8"));
    let (_, _, body, _) = http_get(http, "/hostName");
    assert_eq!(body, hostname());

    let (status, _, body, me) = http_get(http, "/clientip");
    assert_eq!((status, body), (200, me.to_string()));

    let (status, _, body, _) = http_get(http, "/echo?msg=hello%20world");
    assert_eq!((status, body.as_str()), (200, "hello world"));
    let (status, _, body, _) = http_get(http, "/echo?msg=teapot&code=418");
    assert_eq!((status, body.as_str()), (418, "teapot"));
    let (status, _, body, _) = http_get(http, "/echo?msg=x&code=abc");
    assert_eq!((status, body.as_str()), (200, "argument 'code' must be an integer or empty, got \"abc\"\n"));

    let (status, _, body, _) = http_get(http, "/");
    assert_eq!(status, 200);
    assert!(body.starts_with("NOW: ") && body.contains(" +0000 UTC m=+"), "{body}");
    let (status, _, body, _) = http_get(http, "/healthz");
    assert_eq!((status, body.as_str()), (200, ""));
}

#[test]
fn netexec_udp_answers_hostname_echo_and_clientip() {
    let app = netexec(&[]);
    let udp = app.addr("udp");
    assert_eq!(udp_query(udp, "hostname").0, hostname());
    assert_eq!(udp_query(udp, "  HOSTNAME\n").0, hostname());
    assert_eq!(udp_query(udp, "echo Hello There").0, "hello there");
    let (answer, me) = udp_query(udp, "clientip");
    assert_eq!(answer, me.to_string());
}

#[test]
fn netexec_is_not_healthy_without_udp() {
    let app = start(&["agnhost", "netexec", "--http-port=0", "--udp-port=-1"], &["http"]);
    let (status, _, _, _) = http_get(app.addr("http"), "/healthz");
    assert_eq!(status, 412);
}

#[test]
fn netexec_shutdown_ends_it_at_once() {
    let app = netexec(&[]);
    let raw = http_raw(app.addr("http"), "/shutdown");
    assert!(raw.is_empty(), "no answer: the process exits first");
    assert_eq!(app.exit_code(), 0);
}

#[test]
fn netexec_exit_with_timeout_answers_then_exits_with_the_code() {
    let app = netexec(&[]);
    let (status, _, body, _) = http_get(app.addr("http"), "/exit?code=3&timeout=2s");
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(app.exit_code(), 3);

    let app = netexec(&[]);
    let (_, _, body, _) = http_get(app.addr("http"), "/exit?code=3&timeout=soon");
    assert_eq!(body, "argument 'timeout' must be a valid golang duration or empty, got \"soon\"\n");
    assert!(http_raw(app.addr("http"), "/exit?code=7").is_empty());
    assert_eq!(app.exit_code(), 7);
}

#[test]
fn netexec_dials_http_and_udp() {
    let app = netexec(&[]);
    let (http, udp) = (app.addr("http"), app.addr("udp"));
    let path = format!("/dial?request=hostname&protocol=http&host=127.0.0.1&port={}&tries=2", http.port());
    let (status, _, body, _) = http_get(http, &path);
    assert_eq!(status, 200);
    assert_eq!(body, format!(r#"{{"responses":["{0}","{0}"]}}"#, hostname()));

    let path = format!("/dial?request=hostname&protocol=udp&host=127.0.0.1&port={}&tries=1", udp.port());
    let (_, _, body, _) = http_get(http, &path);
    assert_eq!(body, format!(r#"{{"responses":["{}"]}}"#, hostname()));

    let closed = common::free_port("tcp");
    let path = format!("/dial?request=hostname&protocol=http&host=127.0.0.1&port={closed}&tries=1");
    let (status, _, body, _) = http_get(http, &path);
    assert_eq!(status, 200);
    assert!(
        body.starts_with(r#"{"errors":["Get \"http://127.0.0.1:"#) && body.contains("connection refused"),
        "{body}"
    );

    let (status, _, body, _) = http_get(http, "/dial?host=127.0.0.1&port=1");
    assert_eq!((status, body.as_str()), (400, "request parameter not specified. <nil>\n"));
}

#[test]
fn netexec_shell_and_http_override() {
    let app = netexec(&[]);
    let (status, _, body, _) = http_get(app.addr("http"), "/shell?cmd=echo%20hi%3B%20exit%202");
    assert_eq!((status, body.as_str()), (200, r#"{"error":"exit status 2","output":"hi\n"}"#));

    let app = netexec(&["--http-override=/echo?msg=overridden"]);
    let (_, _, body, _) = http_get(app.addr("http"), "/hostname");
    assert_eq!(body, "overridden");
}

#[test]
fn serve_hostname_over_http_tcp_and_udp() {
    let app = start(&["agnhost", "serve-hostname", "--port=0"], &["http"]);
    let (status, headers, body) = http_get_keepalive(app.addr("http"), "/anything");
    assert_eq!((status, body), (200, hostname()));
    assert_eq!(headers.get("connection"), None);

    let app = start(&["agnhost", "serve-hostname", "--port=0", "--close"], &["http"]);
    let (_, headers, _) = http_get_keepalive(app.addr("http"), "/");
    assert_eq!(headers.get("connection").map(String::as_str), Some("close"));

    let app = start(&["agnhost", "serve-hostname", "--port=0", "--http=false", "--udp", "--tcp"], &["tcp", "udp"]);
    let mut stream = std::net::TcpStream::connect_timeout(&app.addr("tcp"), TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    assert_eq!(answer, hostname());
    assert_eq!(udp_query(app.addr("udp"), "x").0, hostname());
}

#[test]
fn serve_hostname_refuses_http_together_with_udp() {
    let code = images::run_with(&strings(&["agnhost", "serve-hostname", "--udp"]), &images::RunOptions::default());
    assert_eq!(code, 1);
}

#[test]
fn agnhost_command_line_errors_exit_1() {
    let opts = images::RunOptions::default();
    assert_eq!(images::run_with(&strings(&["agnhost", "no-such-command"]), &opts), 1);
    assert_eq!(images::run_with(&strings(&["agnhost", "porter"]), &opts), 1);
    assert_eq!(images::run_with(&strings(&["agnhost", "netexec", "--no-such-flag"]), &opts), 1);
    assert_eq!(images::run_with(&strings(&["agnhost", "netexec", "--http-port=abc"]), &opts), 1);
    assert_eq!(images::run_with(&strings(&["agnhost", "netexec", "positional"]), &opts), 1);
    assert_eq!(images::run_with(&strings(&["agnhost", "netexec", "--help"]), &opts), 0);
    assert_eq!(images::run_with(&strings(&["agnhost"]), &opts), 0);
}
