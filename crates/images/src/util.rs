//! Helpers shared by the programs: hostname, output lines, Go's log and time
//! formats, Go durations and pflag-style command-line flags.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;

/// One line on stdout; a closed stdout is ignored (never a panic).
pub(crate) fn out_line(line: impl fmt::Display) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// One line on stderr; errors are ignored.
pub(crate) fn err_line(line: impl fmt::Display) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Go's `log.Printf` with the default flags: `2006/01/02 15:04:05 msg` on
/// stderr (UTC, the time zone of a container without tzdata).
pub(crate) fn go_log(msg: impl fmt::Display) {
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let msg = msg.to_string();
    let msg = msg.strip_suffix('\n').unwrap_or(&msg);
    err_line(format_args!("{} {msg}", now.strftime("%Y/%m/%d %H:%M:%S")));
}

/// JavaScript's `Date()` string in UTC, as node prints it:
/// `Fri Jul 24 2020 01:39:49 GMT+0000 (Coordinated Universal Time)`.
pub(crate) fn js_date() -> String {
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    now.strftime("%a %b %d %Y %H:%M:%S GMT+0000 (Coordinated Universal Time)").to_string()
}

/// Go's `time.Now().String()` in UTC, with the monotonic reading relative to
/// `start`: `2024-05-01 10:00:00.123456789 +0000 UTC m=+12.345678901`.
pub(crate) fn go_now_string(start: std::time::Instant) -> String {
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let nanos = now.subsec_nanosecond();
    let frac = if nanos == 0 { String::new() } else { format!(".{nanos:09}").trim_end_matches('0').to_string() };
    format!("{}{frac} +0000 UTC m=+{:.9}", now.strftime("%Y-%m-%d %H:%M:%S"), start.elapsed().as_secs_f64())
}

/// The kernel's host name: the pod's name inside its UTS namespace.
pub(crate) fn hostname() -> std::io::Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for `buf.len()` bytes; gethostname writes at most that.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// Put SIGTERM and SIGINT back to their default action (an exec'd process may
/// inherit them ignored), so programs without handlers die by the signal as
/// their upstream counterparts do.
pub(crate) fn reset_signal_dispositions() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: setting a standard disposition has no memory-safety requirements.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
}

/// A duration as Go's `time.ParseDuration` reads it (`"300ms"`, `"-1.5h"`,
/// `"2h45m"`, `"0"`), in nanoseconds.
pub(crate) fn parse_go_duration(s: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {s:?}");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let num = &rest[..num_end];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = num.parse().map_err(|_| invalid())?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            u => return Err(format!("time: unknown unit {u:?} in duration {s:?}")),
        };
        rest = &rest[unit_end..];
        total += value * unit;
    }
    if total > i64::MAX as f64 {
        return Err(invalid());
    }
    let nanos = total.round() as i64;
    Ok(if neg { -nanos } else { nanos })
}

/// Go's `time.Duration.String()`: `0s`, `1.5s`, `100ms`, `1m0s`, `2h3m4s`.
pub(crate) fn go_duration_string(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let frac = |v: u64, digits: u32| {
        let unit = 10u64.pow(digits);
        let (whole, rem) = (v / unit, v % unit);
        if rem == 0 {
            whole.to_string()
        } else {
            format!("{whole}.{:0width$}", rem, width = digits as usize).trim_end_matches('0').to_string()
        }
    };
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        return format!("{sign}{}µs", frac(n, 3));
    }
    if n < 1_000_000_000 {
        return format!("{sign}{}ms", frac(n, 6));
    }
    let secs_nanos = n % 60_000_000_000;
    let mins = n / 60_000_000_000;
    let (h, m) = (mins / 60, mins % 60);
    let s = frac(secs_nanos, 9);
    if h > 0 {
        format!("{sign}{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{sign}{m}m{s}s")
    } else {
        format!("{sign}{s}s")
    }
}

/// The type and default of a command-line flag.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ty {
    Bool(bool),
    Int(i64),
    Str(&'static str),
}

/// A flag of a (cobra) subcommand.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flag {
    pub name: &'static str,
    pub default: Ty,
    pub usage: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Bool(bool),
    Int(i64),
    Str(String),
}

/// Parsed flags; accessors fall back to the declared default.
#[derive(Debug)]
pub(crate) struct Parsed {
    values: HashMap<&'static str, Value>,
    defaults: HashMap<&'static str, Ty>,
    pub positional: Vec<String>,
    pub help: bool,
}

impl Parsed {
    pub fn bool(&self, name: &str) -> bool {
        match (self.values.get(name), self.defaults.get(name)) {
            (Some(Value::Bool(b)), _) | (None, Some(Ty::Bool(b))) => *b,
            _ => false,
        }
    }
    pub fn int(&self, name: &str) -> i64 {
        match (self.values.get(name), self.defaults.get(name)) {
            (Some(Value::Int(i)), _) | (None, Some(Ty::Int(i))) => *i,
            _ => 0,
        }
    }
    pub fn str(&self, name: &str) -> String {
        match (self.values.get(name), self.defaults.get(name)) {
            (Some(Value::Str(s)), _) => s.clone(),
            (None, Some(Ty::Str(s))) => s.to_string(),
            _ => String::new(),
        }
    }
}

/// klog's flags, which agnhost accepts on every subcommand (and ignores here).
const KLOG_FLAGS: &[Flag] = &[
    Flag { name: "add_dir_header", default: Ty::Bool(false), usage: "klog" },
    Flag { name: "alsologtostderr", default: Ty::Bool(false), usage: "klog" },
    Flag { name: "log_backtrace_at", default: Ty::Str(":0"), usage: "klog" },
    Flag { name: "log_dir", default: Ty::Str(""), usage: "klog" },
    Flag { name: "log_file", default: Ty::Str(""), usage: "klog" },
    Flag { name: "log_file_max_size", default: Ty::Int(1800), usage: "klog" },
    Flag { name: "logtostderr", default: Ty::Bool(true), usage: "klog" },
    Flag { name: "one_output", default: Ty::Bool(false), usage: "klog" },
    Flag { name: "skip_headers", default: Ty::Bool(false), usage: "klog" },
    Flag { name: "skip_log_headers", default: Ty::Bool(false), usage: "klog" },
    Flag { name: "stderrthreshold", default: Ty::Str("2"), usage: "klog" },
    Flag { name: "v", default: Ty::Str("0"), usage: "klog" },
    Flag { name: "vmodule", default: Ty::Str(""), usage: "klog" },
];

fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let digits = digits.replace('_', "");
    let v = if let Some(hex) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        i64::from_str_radix(hex, 16).ok()?
    } else {
        digits.parse::<i64>().ok()?
    };
    Some(if neg { -v } else { v })
}

/// Parse `args` the way spf13/pflag does: `--name=value`, `--name value`,
/// `--bool`, `--bool=false`, `--` ends flags, `-h`/`--help`; klog's flags are
/// accepted everywhere. Errors carry pflag's messages.
pub(crate) fn parse_flags(args: &[String], spec: &[Flag]) -> Result<Parsed, String> {
    let all: Vec<&Flag> = spec.iter().chain(KLOG_FLAGS).collect();
    let mut parsed = Parsed {
        values: HashMap::new(),
        defaults: all.iter().map(|f| (f.name, f.default)).collect(),
        positional: Vec::new(),
        help: false,
    };
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            parsed.positional.extend(args[i..].iter().cloned());
            break;
        }
        let (body, shorthand) = if let Some(b) = arg.strip_prefix("--") {
            (b, false)
        } else if let Some(b) = arg.strip_prefix('-').filter(|b| !b.is_empty()) {
            (b, true)
        } else {
            parsed.positional.push(arg.clone());
            continue;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        if name == "help" || (shorthand && name == "h") {
            parsed.help = true;
            continue;
        }
        // Only klog's single-letter `v` exists as a shorthand.
        let flag = if shorthand && name != "v" { None } else { all.iter().find(|f| f.name == name).copied() };
        let Some(flag) = flag else {
            return Err(if shorthand {
                format!("unknown shorthand flag: '{}' in {arg}", name.chars().next().unwrap_or('-'))
            } else {
                format!("unknown flag: --{name}")
            });
        };
        let dashes = if shorthand { "-" } else { "--" };
        let value = match (flag.default, inline) {
            (Ty::Bool(_), None) => "true".to_string(),
            (_, Some(v)) => v,
            (_, None) => match args.get(i) {
                Some(v) => {
                    i += 1;
                    v.clone()
                }
                None => return Err(format!("flag needs an argument: {dashes}{name}")),
            },
        };
        let invalid = |why: &str| format!("invalid argument {value:?} for \"{dashes}{name}\" flag: {why}");
        let v = match flag.default {
            Ty::Bool(_) => Value::Bool(
                parse_go_bool(&value)
                    .ok_or_else(|| invalid(&format!("strconv.ParseBool: parsing {value:?}: invalid syntax")))?,
            ),
            Ty::Int(_) => Value::Int(
                parse_go_int(&value)
                    .ok_or_else(|| invalid(&format!("strconv.ParseInt: parsing {value:?}: invalid syntax")))?,
            ),
            Ty::Str(_) => Value::Str(value.clone()),
        };
        parsed.values.insert(flag.name, v);
    }
    Ok(parsed)
}

/// Cobra-style usage of a subcommand.
pub(crate) fn usage(command: &str, spec: &[Flag]) -> String {
    let mut s = format!("Usage:\n  app {command} [flags]\n\nFlags:\n");
    for f in spec {
        let (ty, default) = match f.default {
            Ty::Bool(b) => ("", if b { " (default true)".to_string() } else { String::new() }),
            Ty::Int(i) => (" int", format!(" (default {i})")),
            Ty::Str("") => (" string", String::new()),
            Ty::Str(v) => (" string", format!(" (default {v:?})")),
        };
        s.push_str(&format!("      --{}{ty}   {}{default}\n", f.name, f.usage));
    }
    s.push_str(&format!("  -h, --help   help for {command}\n"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const SPEC: &[Flag] = &[
        Flag { name: "http-port", default: Ty::Int(8080), usage: "HTTP Listen Port" },
        Flag { name: "udp", default: Ty::Bool(false), usage: "udp" },
        Flag { name: "http", default: Ty::Bool(true), usage: "http" },
        Flag { name: "name", default: Ty::Str("x"), usage: "name" },
    ];

    #[test]
    fn flags_like_pflag() {
        let p = parse_flags(&strings(&["--http-port=9000", "--udp", "--http=false", "--name", "y", "--v=4"]), SPEC)
            .expect("parses");
        assert_eq!((p.int("http-port"), p.bool("udp"), p.bool("http"), p.str("name")), (9000, true, false, "y".into()));
        let p = parse_flags(&strings(&["--http-port", "-1", "extra"]), SPEC).expect("parses");
        assert_eq!(p.int("http-port"), -1);
        assert_eq!(p.positional, strings(&["extra"]));
        let p = parse_flags(&[], SPEC).expect("parses");
        assert_eq!((p.int("http-port"), p.bool("http"), p.str("name")), (8080, true, "x".into()));
        assert_eq!(parse_flags(&strings(&["--nope"]), SPEC).err(), Some("unknown flag: --nope".into()));
        assert!(parse_flags(&strings(&["--http-port=abc"]), SPEC).is_err());
        assert!(parse_flags(&strings(&["--http-port"]), SPEC).is_err());
        assert!(parse_flags(&strings(&["-x"]), SPEC).is_err());
        assert!(parse_flags(&strings(&["-h"]), SPEC).expect("parses").help);
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert_eq!(parse_go_duration("1s"), Ok(1_000_000_000));
        assert_eq!(parse_go_duration("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_go_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_go_duration("-250ms"), Ok(-250_000_000));
        assert!(parse_go_duration("").is_err());
        assert!(parse_go_duration("10").is_err());
        assert!(parse_go_duration("5x").is_err());
        assert_eq!(go_duration_string(0), "0s");
        assert_eq!(go_duration_string(1_500_000_000), "1.5s");
        assert_eq!(go_duration_string(60_000_000_000), "1m0s");
        assert_eq!(go_duration_string(3_723_000_000_000), "1h2m3s");
        assert_eq!(go_duration_string(100_000_000), "100ms");
        assert_eq!(go_duration_string(1_500), "1.5µs");
    }

    #[test]
    fn time_formats() {
        let d = js_date();
        assert!(d.ends_with(" GMT+0000 (Coordinated Universal Time)"), "{d}");
        let g = go_now_string(std::time::Instant::now());
        assert!(g.contains(" +0000 UTC m=+0.0"), "{g}");
        assert!(!hostname().expect("hostname").is_empty());
    }
}
