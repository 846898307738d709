//! Image references -> images, and Kubernetes' command/args rules.

mod common;

use common::strings;
use images::{argv, host_argv, is_builtin_program, normalize, resolve, Builtin, ImageError, Resolved};

#[test]
fn resolves_builtin_images_whatever_the_tag() {
    for image in [
        "minjulee226/myweb",
        "minjulee226/myweb:latest",
        "minjulee226/myweb:customport",
        "docker.io/minjulee226/myweb:v1",
        "index.docker.io/minjulee226/myweb",
        "minjulee226/myweb@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "minjulee226/myweb:v1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ] {
        assert_eq!(resolve(image), Ok(Resolved::Builtin(Builtin::MyWeb)), "{image}");
    }
    for image in [
        "registry.k8s.io/e2e-test-images/agnhost:2.52",
        "registry.k8s.io/e2e-test-images/agnhost",
        "k8s.gcr.io/e2e-test-images/agnhost:2.39",
        "gcr.io/kubernetes-e2e-test-images/agnhost:2.8",
    ] {
        assert_eq!(resolve(image), Ok(Resolved::Builtin(Builtin::Agnhost)), "{image}");
    }
    for image in [
        "registry.k8s.io/pause:3.10",
        "registry.k8s.io/pause",
        "k8s.gcr.io/pause:3.9",
        "gcr.io/google_containers/pause-amd64:3.0",
    ] {
        assert_eq!(resolve(image), Ok(Resolved::Builtin(Builtin::Pause)), "{image}");
    }
}

#[test]
fn resolves_tool_images_to_the_host() {
    for image in [
        "busybox",
        "busybox:1.36",
        "docker.io/library/busybox:latest",
        "library/busybox",
        "nicolaka/netshoot",
        "docker.io/nicolaka/netshoot:v0.13",
        "alpine:3.20",
        "ubuntu:24.04",
        "debian:bookworm-slim",
        "curlimages/curl:8.8.0",
        "registry.k8s.io/e2e-test-images/jessie-dnsutils:1.3",
        "k8s.gcr.io/e2e-test-images/jessie-dnsutils:1.3",
        "registry.k8s.io/e2e-test-images/busybox:1.36.1-1",
    ] {
        assert_eq!(resolve(image), Ok(Resolved::Host), "{image}");
    }
}

#[test]
fn refuses_other_images_naming_the_available_ones() {
    for image in [
        "nginx",
        "nginx:1.27",
        "myregistry.example.com/minjulee226/myweb",
        "localhost:5000/busybox",
        "",
        "minjulee226/other",
    ] {
        let err = resolve(image).expect_err(image);
        let ImageError::NotAvailable { image: got, available } = &err;
        assert_eq!(got, image);
        assert!(available.contains(&"minjulee226/myweb"));
        assert!(available.contains(&"registry.k8s.io/e2e-test-images/agnhost"));
        assert!(available.contains(&"registry.k8s.io/pause"));
        assert!(available.contains(&"busybox"));
        let message = err.to_string();
        assert!(message.contains(&format!("{image:?}")), "{message}");
        assert!(message.contains("minjulee226/myweb, registry.k8s.io/e2e-test-images/agnhost"), "{message}");
    }
}

#[test]
fn normalizes_references() {
    assert_eq!(normalize("docker.io/library/busybox:1.36"), "busybox");
    assert_eq!(normalize("busybox@sha256:abcd"), "busybox");
    assert_eq!(normalize("localhost:5000/foo:bar"), "localhost:5000/foo");
    assert_eq!(normalize("localhost:5000/foo"), "localhost:5000/foo");
    assert_eq!(normalize("k8s.gcr.io/pause:3.2"), "registry.k8s.io/pause");
    assert_eq!(normalize("gcr.io/google-containers/busybox"), "registry.k8s.io/busybox");
    assert_eq!(normalize("quay.io/prometheus/busybox"), "quay.io/prometheus/busybox");
}

#[test]
fn argv_follows_kubernetes_command_and_args_rules() {
    let none: Vec<String> = Vec::new();
    // Neither: ENTRYPOINT + CMD.
    assert_eq!(argv(Builtin::MyWeb, &none, &none), strings(&["myweb", "Hello World!"]));
    assert_eq!(argv(Builtin::Agnhost, &none, &none), strings(&["agnhost", "pause"]));
    assert_eq!(argv(Builtin::Pause, &none, &none), strings(&["pause"]));
    // args only: ENTRYPOINT + args.
    let args = strings(&["netexec", "--http-port=8080"]);
    assert_eq!(argv(Builtin::Agnhost, &none, &args), strings(&["agnhost", "netexec", "--http-port=8080"]));
    assert_eq!(argv(Builtin::MyWeb, &none, &strings(&["Hi"])), strings(&["myweb", "Hi"]));
    // command only: the image's CMD is dropped.
    let command = strings(&["/agnhost", "serve-hostname"]);
    assert_eq!(argv(Builtin::Agnhost, &command, &none), command);
    // both: command + args.
    assert_eq!(
        argv(Builtin::Agnhost, &strings(&["/agnhost"]), &strings(&["netexec"])),
        strings(&["/agnhost", "netexec"])
    );
    assert_eq!(host_argv(&none, &none), strings(&["sh"]));
    assert_eq!(host_argv(&none, &strings(&["nslookup", "x"])), strings(&["nslookup", "x"]));
    assert_eq!(host_argv(&strings(&["sleep"]), &strings(&["3600"])), strings(&["sleep", "3600"]));
}

#[test]
fn knows_which_argv_are_builtin_programs() {
    for argv in [
        &["myweb"][..],
        &["node", "index.js", "hi"],
        &["agnhost", "netexec"],
        &["/agnhost", "pause"],
        &["/agnhost-2"],
        &["/pause"],
    ] {
        assert!(is_builtin_program(&strings(argv)), "{argv:?}");
    }
    for argv in [&["sh", "-c", "sleep 1"][..], &["/bin/sh"], &["node"], &[]] {
        assert!(!is_builtin_program(&strings(argv)), "{argv:?}");
    }
    assert_eq!(images::run_with(&strings(&["/bin/sh"]), &images::RunOptions::default()), 127);
}
