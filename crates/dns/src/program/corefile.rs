//! The part of CoreDNS's Corefile syntax the add-on programs read: server blocks
//! (`ZONE[:PORT] [ZONE...] {`) holding one directive per line, a directive
//! optionally opening a block of its own (`kubernetes cluster.local {` ... `}`).
//! Anchor: <https://coredns.io/manual/configuration/> (Caddyfile syntax).
//! Environment placeholders (`{$VAR}`) are expanded as CoreDNS does.

/// One directive (`forward . /etc/resolv.conf`) with its sub-directives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub block: Vec<Directive>,
}

/// One server block: the zones it serves, its port, its directives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerBlock {
    /// Zones without the trailing dot; `.` is the root.
    pub zones: Vec<String>,
    pub port: u16,
    pub directives: Vec<Directive>,
}

impl ServerBlock {
    /// The first directive called `name`.
    pub fn directive(&self, name: &str) -> Option<&Directive> {
        self.directives.iter().find(|d| d.name == name)
    }

    /// Whether this block serves the root zone `.`.
    pub fn is_root(&self) -> bool {
        self.zones.iter().any(|z| z == ".")
    }
}

/// A Corefile that could not be read, with the line it stopped at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Corefile line {line}: {message}")]
pub struct CorefileError {
    pub line: usize,
    pub message: String,
}

/// Parses a Corefile; `env` expands `{$VAR}` (CoreDNS reads the environment).
pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<ServerBlock>, CorefileError> {
    let mut blocks = Vec::new();
    // The open blocks: the server block's directives, then nested directives.
    let mut stack: Vec<Directive> = Vec::new();
    let mut header: Option<(Vec<String>, u16)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |message: String| CorefileError { line, message };
        let code = raw.split('#').next().unwrap_or_default();
        let mut words: Vec<String> = code.split_whitespace().map(|w| expand(w, env)).collect();
        if words.is_empty() {
            continue;
        }
        let opens = words.last().is_some_and(|w| w == "{");
        if opens {
            words.pop();
        }
        if words.is_empty() {
            return Err(err("'{' must end a line that names a server block or a directive".into()));
        }
        if words.len() == 1 && words[0] == "}" {
            match stack.pop() {
                Some(done) if stack.is_empty() => {
                    let (zones, port) = header.take().ok_or_else(|| err("'}' without a server block".into()))?;
                    blocks.push(ServerBlock { zones, port, directives: done.block });
                }
                Some(done) => {
                    if let Some(parent) = stack.last_mut() {
                        parent.block.push(done);
                    }
                }
                None => return Err(err("'}' without an open block".into())),
            }
            continue;
        }
        if stack.is_empty() {
            if !opens {
                return Err(err(format!("expected a server block like '.:53 {{', found {code:?}")));
            }
            let mut zones = Vec::new();
            let mut port = 53;
            for key in &words {
                let key = key.strip_prefix("dns://").unwrap_or(key);
                let (zone, p) = match key.rsplit_once(':') {
                    Some((z, p)) => (z, p.parse().map_err(|_| err(format!("bad port in {key:?}")))?),
                    None => (key, 53),
                };
                port = p;
                let zone = if zone == "." { "." } else { zone.trim_end_matches('.') };
                zones.push(if zone.is_empty() { ".".to_string() } else { zone.to_string() });
            }
            header = Some((zones, port));
            stack.push(Directive::default());
            continue;
        }
        let d = Directive { name: words[0].clone(), args: words[1..].to_vec(), block: Vec::new() };
        if opens {
            stack.push(d);
        } else if let Some(parent) = stack.last_mut() {
            parent.block.push(d);
        }
    }
    if !stack.is_empty() {
        return Err(CorefileError { line: text.lines().count(), message: "a block is not closed with '}'".into() });
    }
    Ok(blocks)
}

/// `{$VAR}` and `{%VAR%}` from the environment (empty when unset), as CoreDNS.
fn expand(word: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = word;
    while let Some(start) = rest.find('{') {
        let (open, close) = match rest[start..].chars().nth(1) {
            Some('$') => ("{$", "}"),
            Some('%') => ("{%", "%}"),
            _ => break,
        };
        let Some(end) = rest[start + open.len()..].find(close) else { break };
        out.push_str(&rest[..start]);
        out.push_str(&env(&rest[start + open.len()..start + open.len() + end]).unwrap_or_default());
        rest = &rest[start + open.len() + end + close.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBEADM: &str = r#"
.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30 # seconds
    loop
    reload
    loadbalance
}
"#;

    #[test]
    fn reads_kubeadms_corefile() {
        let b = parse(KUBEADM, &|_| None).expect("parses");
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].zones, ["."]);
        assert_eq!(b[0].port, 53);
        let k = b[0].directive("kubernetes").expect("kubernetes");
        assert_eq!(k.args, ["cluster.local", "in-addr.arpa", "ip6.arpa"]);
        assert_eq!(k.block[2], Directive { name: "ttl".into(), args: vec!["30".into()], block: vec![] });
        assert_eq!(b[0].directive("forward").expect("forward").args, [".", "/etc/resolv.conf"]);
        assert_eq!(b[0].directive("cache").expect("cache").args, ["30"]);
        assert_eq!(b[0].directive("health").expect("health").block[0].name, "lameduck");
    }

    #[test]
    fn several_blocks_ports_and_environment() {
        let text = "cluster.local:5353 {\n  forward . {$KUBE_DNS_SERVICE_HOST} {\n force_tcp\n }\n}\nin-addr.arpa. ip6.arpa {\n}\n";
        let env = |k: &str| (k == "KUBE_DNS_SERVICE_HOST").then(|| "10.96.0.10".to_string());
        let b = parse(text, &env).expect("parses");
        assert_eq!(b[0].zones, ["cluster.local"]);
        assert_eq!(b[0].port, 5353);
        assert_eq!(b[0].directive("forward").expect("forward").args, [".", "10.96.0.10"]);
        assert_eq!(b[1].zones, ["in-addr.arpa", "ip6.arpa"]);
        assert!(!b[1].is_root());
    }

    #[test]
    fn unbalanced_blocks_name_the_line() {
        let e = parse(".:53 {\n  errors\n", &|_| None).expect_err("unclosed");
        assert!(e.message.contains("not closed"), "{e}");
        let e = parse("errors\n", &|_| None).expect_err("no block");
        assert_eq!(e.line, 1);
        let e = parse(".:53 {\n}\n}\n", &|_| None).expect_err("extra");
        assert_eq!(e.line, 3);
        let e = parse(".:53 {\n  {\n}\n", &|_| None).expect_err("lone brace");
        assert_eq!(e.line, 2);
    }
}
