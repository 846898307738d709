//! Service environment variables, exactly as kubelet sets them (upstream
//! `pkg/kubelet/envvars/envvars.go`): `{SVC}_SERVICE_HOST`, `{SVC}_SERVICE_PORT`,
//! `{SVC}_SERVICE_PORT_{NAME}` and the Docker-links family `{SVC}_PORT...`.

use k8s_openapi::api::core::v1::Service;

/// `mynapp-svc` -> `MYNAPP_SVC`.
fn env_name(s: &str) -> String {
    s.to_uppercase().replace('-', "_")
}

/// Variables for the given Services (already chosen: ClusterIP Services of the
/// pod's namespace, plus `kubernetes` from `default`), in kubelet's order.
pub fn from_services(services: &[Service]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        let ip = spec.cluster_ip.as_deref().unwrap_or_default();
        // Headless and IP-less Services get no variables (upstream IsServiceIPSet).
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let ports = spec.ports.clone().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let name = env_name(svc.metadata.name.as_deref().unwrap_or_default());
        out.push((format!("{name}_SERVICE_HOST"), ip.to_string()));
        out.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
        for p in &ports {
            if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((format!("{name}_SERVICE_PORT_{}", env_name(pn)), p.port.to_string()));
            }
        }
        // Docker-compatible link variables.
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| p.protocol.clone().unwrap_or_else(|| "TCP".into());
        out.push((format!("{name}_PORT"), format!("{}://{ip}:{}", proto(first).to_lowercase(), first.port)));
        for p in &ports {
            let pr = proto(p);
            let prefix = format!("{name}_PORT_{}_{}", p.port, pr.to_uppercase());
            out.push((prefix.clone(), format!("{}://{ip}:{}", pr.to_lowercase(), p.port)));
            out.push((format!("{prefix}_PROTO"), pr.to_lowercase()));
            out.push((format!("{prefix}_PORT"), p.port.to_string()));
            out.push((format!("{prefix}_ADDR"), ip.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(
            serde_json::json!({"metadata": {"name": name}, "spec": {"clusterIP": ip, "ports": ports}}),
        )
        .unwrap()
    }

    #[test]
    fn lesson_service_variables() {
        let vars =
            from_services(&[svc("mynapp-svc", "10.96.12.34", serde_json::json!([{"port": 80, "protocol": "TCP"}]))]);
        let want = [
            ("MYNAPP_SVC_SERVICE_HOST", "10.96.12.34"),
            ("MYNAPP_SVC_SERVICE_PORT", "80"),
            ("MYNAPP_SVC_PORT", "tcp://10.96.12.34:80"),
            ("MYNAPP_SVC_PORT_80_TCP", "tcp://10.96.12.34:80"),
            ("MYNAPP_SVC_PORT_80_TCP_PROTO", "tcp"),
            ("MYNAPP_SVC_PORT_80_TCP_PORT", "80"),
            ("MYNAPP_SVC_PORT_80_TCP_ADDR", "10.96.12.34"),
        ];
        let got: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn named_ports_and_headless() {
        let vars = from_services(&[
            svc("kubernetes", "10.96.0.1", serde_json::json!([{"name": "https", "port": 443, "protocol": "TCP"}])),
            svc("hl", "None", serde_json::json!([{"port": 80}])),
        ]);
        assert!(vars.contains(&("KUBERNETES_SERVICE_PORT_HTTPS".into(), "443".into())));
        assert!(vars.contains(&("KUBERNETES_PORT_443_TCP_ADDR".into(), "10.96.0.1".into())));
        assert!(!vars.iter().any(|(k, _)| k.starts_with("HL_")));
    }
}
