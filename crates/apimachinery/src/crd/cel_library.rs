//! Kubernetes' own CEL libraries for validation rules
//! (`k8s.io/apiserver/pkg/cel/library`): `ip.go`, `cidr.go`, `urls.go`,
//! `quantity.go` and `lists.go`, as functions added to a rule's context.
//! IPs, CIDRs, URLs and quantities are opaque values, made by `ip()`,
//! `cidr()`, `url()` and `quantity()` and used through their methods.
//!
//! Not here: `string(<ip|cidr>)` (the standard `string` overloads cannot be
//! extended from a context), the `format` library and `regex`'s
//! `find`/`findAll`. Quantities compare as doubles, not upstream's exact decimals.

use cel::extractors::This;
use cel::objects::{Key, Map, Opaque};
use cel::{Context, ExecutionError, Value as Cel};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// An `ip` value (`net.IP` via `netip.Addr` upstream).
#[derive(Debug, PartialEq, Eq)]
struct Ip(IpAddr);

impl Opaque for Ip {
    fn runtime_type_name(&self) -> &str {
        "net.IP"
    }
}

/// A `cidr` value: its address as written and its prefix length.
#[derive(Debug, PartialEq, Eq)]
struct Cidr(ipnet::IpNet);

impl Opaque for Cidr {
    fn runtime_type_name(&self) -> &str {
        "net.CIDR"
    }
}

/// A `url` value (`net/url.URL`).
#[derive(Debug, PartialEq, Eq)]
struct Url {
    scheme: String,
    host: String,
    path: String,
    query: String,
}

impl Opaque for Url {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.URL"
    }
}

/// A `quantity` value (`resource.Quantity`), as its value in base units.
#[derive(Debug, PartialEq)]
struct Quantity(f64);

impl Eq for Quantity {}

impl Opaque for Quantity {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.Quantity"
    }
}

fn err(function: &str, message: impl ToString) -> ExecutionError {
    ExecutionError::function_error(function, message)
}

fn opaque<T: Opaque>(v: &Cel) -> Option<&T> {
    match v {
        Cel::Opaque(o) => o.downcast_ref::<T>(),
        _ => None,
    }
}

fn string_of(v: &Cel) -> Option<&str> {
    match v {
        Cel::String(s) => Some(s.as_str()),
        _ => None,
    }
}

/// `ip.go` `parseIPAddr`: no zones, no IPv4-mapped IPv6 addresses.
fn parse_ip(s: &str) -> Result<IpAddr, String> {
    if s.contains('%') {
        return Err(format!("IP address with zone value is not allowed: {s}"));
    }
    let ip: IpAddr = s.parse().map_err(|_| format!("IP Address {s:?} parse error during conversion from string"))?;
    if let IpAddr::V6(v6) = ip {
        if v6.to_ipv4_mapped().is_some() {
            return Err(format!("IPv4-mapped IPv6 address {s:?} is not allowed"));
        }
    }
    Ok(ip)
}

fn parse_cidr(s: &str) -> Result<ipnet::IpNet, String> {
    let net: ipnet::IpNet =
        s.parse().map_err(|_| format!("network address {s:?} parse error during conversion from string"))?;
    parse_ip(&net.addr().to_string()).map_err(|_| format!("IPv4-mapped IPv6 address {s:?} is not allowed"))?;
    Ok(net)
}

/// `url.go`: an absolute URI or an absolute path (`url.ParseRequestURI`).
fn parse_url(s: &str) -> Result<Url, String> {
    let bad = || format!("URL parse error during conversion from string: parse {s:?}: invalid URI for request");
    if s.starts_with('/') {
        let (path, query) = s.split_once('?').unwrap_or((s, ""));
        return Ok(Url { scheme: String::new(), host: String::new(), path: path.into(), query: query.into() });
    }
    let (scheme, rest) = s.split_once(':').ok_or_else(bad)?;
    let valid_scheme = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid_scheme || s.contains(' ') {
        return Err(bad());
    }
    let (host, rest) = match rest.strip_prefix("//") {
        Some(r) => {
            let end = r.find(['/', '?']).unwrap_or(r.len());
            (r[..end].to_string(), &r[end..])
        }
        None => (String::new(), rest),
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    Ok(Url { scheme: scheme.into(), host, path: path.into(), query: query.into() })
}

fn url_hostname(u: &Url) -> &str {
    let host = u.host.rsplit_once('@').map(|(_, h)| h).unwrap_or(&u.host);
    if let Some(inner) = host.strip_prefix('[') {
        return inner.split(']').next().unwrap_or_default();
    }
    host.split(':').next().unwrap_or_default()
}

fn url_port(u: &Url) -> &str {
    let host = u.host.rsplit_once('@').map(|(_, h)| h).unwrap_or(&u.host);
    let after = match host.rfind(']') {
        Some(i) => &host[i + 1..],
        None => host,
    };
    after.rsplit_once(':').map(|(_, p)| p).unwrap_or_default()
}

fn query_map(q: &str) -> Cel {
    let mut m: HashMap<Key, Vec<Cel>> = HashMap::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        m.entry(Key::String(Arc::new(k.to_string()))).or_default().push(Cel::String(Arc::new(v.to_string())));
    }
    Cel::Map(Map { map: Arc::new(m.into_iter().map(|(k, v)| (k, Cel::List(Arc::new(v)))).collect()) })
}

fn quantity_of(v: &Cel, function: &str) -> Result<f64, ExecutionError> {
    match v {
        Cel::Int(i) => Ok(*i as f64),
        other => opaque::<Quantity>(other).map(|q| q.0).ok_or_else(|| err(function, "expected a quantity")),
    }
}

fn str_arg(v: &Cel, function: &str) -> Result<String, ExecutionError> {
    string_of(v).map(String::from).ok_or_else(|| err(function, "expected a string"))
}

/// Add the libraries' functions to a rule's context.
pub fn add(ctx: &mut Context<'_, '_>) {
    add_lists(ctx);
    add_ip_cidr(ctx);
    add_url(ctx);
    add_quantity(ctx);
}

/// `lists.go`: `isSorted`, `sum`, `min`, `max` (`indexOf` is the strings
/// extension's name as well, so lists don't get it here).
fn add_lists(ctx: &mut Context<'_, '_>) {
    let _ = ctx.add_function("isSorted", |This(l): This<Arc<Vec<Cel>>>| -> bool {
        l.windows(2).all(|w| w[0].partial_cmp(&w[1]).is_some_and(|o| o != std::cmp::Ordering::Greater))
    });
    let _ = ctx.add_function("sum", |This(l): This<Arc<Vec<Cel>>>| -> Result<Cel, ExecutionError> {
        let mut int: i64 = 0;
        let mut float: f64 = 0.0;
        let mut floats = false;
        for v in l.iter() {
            match v {
                Cel::Int(i) => int = int.checked_add(*i).ok_or_else(|| err("sum", "integer overflow"))?,
                Cel::Float(f) => {
                    floats = true;
                    float += f
                }
                other => return Err(err("sum", format!("not a number: {other:?}"))),
            }
        }
        Ok(if floats { Cel::Float(float + int as f64) } else { Cel::Int(int) })
    });
    fn extreme(l: &[Cel], name: &str, want: std::cmp::Ordering) -> Result<Cel, ExecutionError> {
        let mut best: Option<&Cel> = None;
        for v in l {
            best = match best {
                Some(b) if v.partial_cmp(b) != Some(want) => Some(b),
                _ => Some(v),
            };
        }
        best.cloned().ok_or_else(|| err(name, "list is empty"))
    }
    let _ = ctx.add_function("min", |This(l): This<Arc<Vec<Cel>>>| extreme(&l, "min", std::cmp::Ordering::Less));
    let _ = ctx.add_function("max", |This(l): This<Arc<Vec<Cel>>>| extreme(&l, "max", std::cmp::Ordering::Greater));
}

fn add_ip_cidr(ctx: &mut Context<'_, '_>) {
    let _ = ctx.add_function("isIP", |s: Arc<String>| parse_ip(&s).is_ok());
    let _ = ctx.add_function("isCIDR", |s: Arc<String>| parse_cidr(&s).is_ok());
    // `ip(string)`, and `<cidr>.ip()`: the CIDR's address.
    let _ = ctx.add_function("ip", |This(v): This<Cel>| -> Result<Cel, ExecutionError> {
        if let Some(c) = opaque::<Cidr>(&v) {
            return Ok(Cel::Opaque(Arc::new(Ip(c.0.addr()))));
        }
        let s = str_arg(&v, "ip")?;
        parse_ip(&s).map(|ip| Cel::Opaque(Arc::new(Ip(ip)))).map_err(|e| err("ip", e))
    });
    let _ = ctx.add_function("ip.isCanonical", |s: Arc<String>| -> Result<bool, ExecutionError> {
        let ip = parse_ip(&s).map_err(|e| err("ip.isCanonical", e))?;
        Ok(ip.to_string() == *s)
    });
    let _ = ctx.add_function("cidr", |s: Arc<String>| -> Result<Cel, ExecutionError> {
        parse_cidr(&s).map(|c| Cel::Opaque(Arc::new(Cidr(c)))).map_err(|e| err("cidr", e))
    });
    let ip_method = |name: &'static str, f: fn(&IpAddr) -> Cel| {
        move |This(v): This<Cel>| -> Result<Cel, ExecutionError> {
            opaque::<Ip>(&v).map(|ip| f(&ip.0)).ok_or_else(|| err(name, "expected an IP"))
        }
    };
    let _ = ctx.add_function("family", ip_method("family", |ip| Cel::Int(if ip.is_ipv4() { 4 } else { 6 })));
    let _ = ctx.add_function("isUnspecified", ip_method("isUnspecified", |ip| Cel::Bool(ip.is_unspecified())));
    let _ = ctx.add_function("isLoopback", ip_method("isLoopback", |ip| Cel::Bool(ip.is_loopback())));
    let _ = ctx.add_function(
        "isLinkLocalMulticast",
        ip_method("isLinkLocalMulticast", |ip| {
            Cel::Bool(match ip {
                IpAddr::V4(v4) => v4.octets()[..3] == [224, 0, 0],
                IpAddr::V6(v6) => v6.segments()[0] & 0xff0f == 0xff02,
            })
        }),
    );
    let _ = ctx.add_function(
        "isLinkLocalUnicast",
        ip_method("isLinkLocalUnicast", |ip| {
            Cel::Bool(match ip {
                IpAddr::V4(v4) => v4.is_link_local(),
                IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
            })
        }),
    );
    // Go's `IsGlobalUnicast`: not unspecified, loopback, multicast, link-local or broadcast.
    let _ = ctx.add_function(
        "isGlobalUnicast",
        ip_method("isGlobalUnicast", |ip| {
            Cel::Bool(match ip {
                IpAddr::V4(v4) => {
                    !(v4.is_unspecified()
                        || v4.is_loopback()
                        || v4.is_multicast()
                        || v4.is_link_local()
                        || v4.is_broadcast())
                }
                IpAddr::V6(v6) => {
                    !(v6.is_unspecified()
                        || v6.is_loopback()
                        || v6.is_multicast()
                        || v6.segments()[0] & 0xffc0 == 0xfe80)
                }
            })
        }),
    );
    let _ = ctx.add_function("containsIP", |This(v): This<Cel>, other: Cel| -> Result<bool, ExecutionError> {
        let c = opaque::<Cidr>(&v).ok_or_else(|| err("containsIP", "expected a CIDR"))?;
        let ip = match opaque::<Ip>(&other) {
            Some(ip) => ip.0,
            None => parse_ip(&str_arg(&other, "containsIP")?).map_err(|e| err("containsIP", e))?,
        };
        Ok(c.0.contains(&ip))
    });
    let _ = ctx.add_function("containsCIDR", |This(v): This<Cel>, other: Cel| -> Result<bool, ExecutionError> {
        let c = opaque::<Cidr>(&v).ok_or_else(|| err("containsCIDR", "expected a CIDR"))?;
        let o = match opaque::<Cidr>(&other) {
            Some(o) => o.0,
            None => parse_cidr(&str_arg(&other, "containsCIDR")?).map_err(|e| err("containsCIDR", e))?,
        };
        Ok(c.0.contains(&o.trunc()) && o.prefix_len() >= c.0.prefix_len())
    });
    let _ = ctx.add_function("prefixLength", |This(v): This<Cel>| -> Result<i64, ExecutionError> {
        opaque::<Cidr>(&v).map(|c| i64::from(c.0.prefix_len())).ok_or_else(|| err("prefixLength", "expected a CIDR"))
    });
    let _ = ctx.add_function("masked", |This(v): This<Cel>| -> Result<Cel, ExecutionError> {
        opaque::<Cidr>(&v)
            .map(|c| Cel::Opaque(Arc::new(Cidr(c.0.trunc()))))
            .ok_or_else(|| err("masked", "expected a CIDR"))
    });
}

fn add_url(ctx: &mut Context<'_, '_>) {
    let _ = ctx.add_function("isURL", |s: Arc<String>| parse_url(&s).is_ok());
    let _ = ctx.add_function("url", |s: Arc<String>| -> Result<Cel, ExecutionError> {
        parse_url(&s).map(|u| Cel::Opaque(Arc::new(u))).map_err(|e| err("url", e))
    });
    let url_method = |name: &'static str, f: fn(&Url) -> Cel| {
        move |This(v): This<Cel>| -> Result<Cel, ExecutionError> {
            opaque::<Url>(&v).map(f).ok_or_else(|| err(name, "expected a URL"))
        }
    };
    let _ = ctx.add_function("getScheme", url_method("getScheme", |u| Cel::String(Arc::new(u.scheme.clone()))));
    let _ = ctx.add_function("getHost", url_method("getHost", |u| Cel::String(Arc::new(u.host.clone()))));
    let _ =
        ctx.add_function("getHostname", url_method("getHostname", |u| Cel::String(Arc::new(url_hostname(u).into()))));
    let _ = ctx.add_function("getPort", url_method("getPort", |u| Cel::String(Arc::new(url_port(u).into()))));
    let _ = ctx.add_function("getEscapedPath", url_method("getEscapedPath", |u| Cel::String(Arc::new(u.path.clone()))));
    let _ = ctx.add_function("getQuery", url_method("getQuery", |u| query_map(&u.query)));
}

fn add_quantity(ctx: &mut Context<'_, '_>) {
    let _ = ctx.add_function("isQuantity", |s: Arc<String>| crate::quantity::parse(&s).is_some());
    let _ = ctx.add_function("quantity", |s: Arc<String>| -> Result<Cel, ExecutionError> {
        crate::quantity::parse(&s)
            .map(|q| Cel::Opaque(Arc::new(Quantity(q))))
            .ok_or_else(|| err("quantity", format!("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {s:?}")))
    });
    let q_method = |name: &'static str, f: fn(f64) -> Result<Cel, ExecutionError>| {
        move |This(v): This<Cel>| -> Result<Cel, ExecutionError> { f(quantity_of(&v, name)?) }
    };
    let _ =
        ctx.add_function("isInteger", q_method("isInteger", |q| Ok(Cel::Bool(q.fract() == 0.0 && q.abs() < 9.2e18))));
    let _ = ctx.add_function(
        "asInteger",
        q_method("asInteger", |q| {
            if q.fract() == 0.0 && q.abs() < 9.2e18 {
                Ok(Cel::Int(q as i64))
            } else {
                Err(err("asInteger", "cannot convert value to integer"))
            }
        }),
    );
    let _ = ctx.add_function("asApproximateFloat", q_method("asApproximateFloat", |q| Ok(Cel::Float(q))));
    let _ = ctx.add_function(
        "sign",
        q_method("sign", |q| {
            Ok(Cel::Int(if q > 0.0 {
                1
            } else if q < 0.0 {
                -1
            } else {
                0
            }))
        }),
    );
    let binary = |name: &'static str, f: fn(f64, f64) -> Cel| {
        move |This(v): This<Cel>, other: Cel| -> Result<Cel, ExecutionError> {
            Ok(f(quantity_of(&v, name)?, quantity_of(&other, name)?))
        }
    };
    let _ = ctx.add_function("isGreaterThan", binary("isGreaterThan", |a, b| Cel::Bool(a > b)));
    let _ = ctx.add_function("isLessThan", binary("isLessThan", |a, b| Cel::Bool(a < b)));
    let _ = ctx.add_function(
        "compareTo",
        binary("compareTo", |a, b| {
            Cel::Int(if a > b {
                1
            } else if a < b {
                -1
            } else {
                0
            })
        }),
    );
    let _ = ctx.add_function("add", binary("add", |a, b| Cel::Opaque(Arc::new(Quantity(a + b)))));
    let _ = ctx.add_function("sub", binary("sub", |a, b| Cel::Opaque(Arc::new(Quantity(a - b)))));
}

#[cfg(test)]
mod tests {
    use super::super::rules;
    use serde_json::json;

    /// Each rule holds on `{"s": <value>}`.
    fn holds(rule: &str, value: serde_json::Value) -> Result<(), String> {
        let schema = json!({"type": "object", "properties": {"s": {"type": "string"}},
            "x-kubernetes-validations": [{"rule": rule}]});
        let errs = rules::validate(&json!({"s": value}), None, &schema);
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
        }
    }

    #[test]
    fn ip_and_cidr() {
        for rule in [
            "isIP(self.s) && ip(self.s).family() == 4 && !ip(self.s).isLoopback() && ip(self.s).isGlobalUnicast()",
            "cidr('10.0.0.0/8').containsIP(self.s) && cidr('10.0.0.0/8').containsIP(ip(self.s))",
            "cidr('10.1.2.3/8').masked() == cidr('10.0.0.0/8') && cidr('10.1.2.3/8').prefixLength() == 8",
            "cidr('10.0.0.0/8').containsCIDR('10.1.0.0/16') && !cidr('10.1.0.0/16').containsCIDR('10.0.0.0/8')",
            "ip.isCanonical('10.1.2.3') && !isIP('::ffff:10.1.2.3') && !isIP('fe80::1%eth0') && isCIDR('fd00::/64')",
            "ip('127.0.0.1').isLoopback() && ip('::').isUnspecified() && ip('fe80::1').isLinkLocalUnicast() && ip('224.0.0.1').isLinkLocalMulticast()",
            "cidr('10.1.2.3/8').ip() == ip('10.1.2.3')",
        ] {
            assert_eq!(holds(rule, json!("10.1.2.3")), Ok(()), "{rule}");
        }
        assert!(holds("isIP(self.s)", json!("10.1.2")).is_err());
        let e = holds("ip(self.s).family() == 4", json!("nope")).unwrap_err();
        assert!(e.contains("parse error"), "{e}");
    }

    #[test]
    fn urls() {
        let rule =
            "isURL(self.s) && url(self.s).getScheme() == 'https' && url(self.s).getHost() == 'example.com:8443' \
            && url(self.s).getHostname() == 'example.com' && url(self.s).getPort() == '8443' \
            && url(self.s).getEscapedPath() == '/a/b' && url(self.s).getQuery()['x'] == ['1', '2']";
        assert_eq!(holds(rule, json!("https://example.com:8443/a/b?x=1&x=2")), Ok(()));
        assert_eq!(holds("isURL(self.s) && url(self.s).getHost() == ''", json!("/just/a/path")), Ok(()));
        assert!(holds("isURL(self.s)", json!("not a url")).is_err());
        assert_eq!(
            holds("url(self.s).getHostname() == '::1' && url(self.s).getPort() == '80'", json!("http://[::1]:80/")),
            Ok(())
        );
    }

    #[test]
    fn quantities() {
        for rule in [
            "isQuantity(self.s) && quantity(self.s).isGreaterThan(quantity('1Gi')) && quantity(self.s).isLessThan(quantity('3Gi'))",
            "quantity(self.s).compareTo(quantity('2Gi')) == 0 && quantity(self.s).isInteger() && quantity(self.s).asInteger() == 2147483648",
            "quantity(self.s).add(quantity('1Gi')) == quantity('3Gi') && quantity(self.s).sub(1) .isLessThan(quantity('2Gi'))",
            "quantity('500m').asApproximateFloat() == 0.5 && !quantity('500m').isInteger() && quantity('-1').sign() == -1",
            "!isQuantity('two')",
        ] {
            assert_eq!(holds(rule, json!("2Gi")), Ok(()), "{rule}");
        }
    }
}
