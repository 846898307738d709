//! Container logs in the CRI format kubelet reads (`kubectl logs`):
//! `<RFC3339Nano UTC timestamp> <stdout|stderr> <F|P> <line>`; `P` marks a
//! partial line (a line longer than the runtime's buffer is split, as
//! containerd does at 16 KiB), `F` a complete one.

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest line written as one entry; longer lines become `P` entries.
pub(crate) const MAX_LINE: usize = 16 * 1024;

/// Copy `reader` into `file` line by line until EOF.
pub(crate) async fn pump<R: AsyncRead + Unpin>(mut reader: R, stream: &'static str, file: Arc<Mutex<File>>) {
    let mut buf = vec![0u8; 8192];
    let mut line: Vec<u8> = Vec::new();
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    line.extend_from_slice(&rest[..i]);
                    rest = &rest[i + 1..];
                    write_entries(&file, stream, &mut line, true);
                }
                None => {
                    line.extend_from_slice(rest);
                    rest = &[];
                    write_entries(&file, stream, &mut line, false);
                }
            }
        }
    }
    if !line.is_empty() {
        write_entries(&file, stream, &mut line, true);
    }
}

/// Write out `line`: full `P` chunks while it is too long, then (when
/// `complete`) the remainder as `F`. What is left stays in `line`.
fn write_entries(file: &Mutex<File>, stream: &str, line: &mut Vec<u8>, complete: bool) {
    let mut out = Vec::new();
    while line.len() > MAX_LINE || (line.len() == MAX_LINE && !complete) {
        out.extend(entry(SystemTime::now(), stream, 'P', &line[..MAX_LINE]));
        line.drain(..MAX_LINE);
    }
    if complete {
        out.extend(entry(SystemTime::now(), stream, 'F', line));
        line.clear();
    }
    if out.is_empty() {
        return;
    }
    if let Ok(mut f) = file.lock() {
        if let Err(e) = f.write_all(&out) {
            tracing::debug!(error = %e, "writing container log failed");
        }
    }
}

/// One CRI log line.
pub(crate) fn entry(t: SystemTime, stream: &str, tag: char, msg: &[u8]) -> Vec<u8> {
    let mut v = format!("{} {stream} {tag} ", rfc3339_nanos(t)).into_bytes();
    v.extend_from_slice(msg);
    v.push(b'\n');
    v
}

/// `2026-11-25T23:18:53.123456789Z`: UTC, always nine fractional digits.
pub(crate) fn rfc3339_nanos(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!("{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z", rem / 3600, rem % 3600 / 60, rem % 60, d.subsec_nanos())
}

/// Days since 1970-01-01 to (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_match_rfc3339() {
        assert_eq!(rfc3339_nanos(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        for secs in [951_782_400u64, 1_709_164_800, 1_795_648_733, 4_102_444_799, 13_569_465_599] {
            let t = UNIX_EPOCH + Duration::new(secs, 123_456_789);
            let ts = jiff::Timestamp::from_second(secs as i64).expect("ts");
            let want = format!("{}.123456789Z", ts.strftime("%Y-%m-%dT%H:%M:%S"));
            assert_eq!(rfc3339_nanos(t), want);
        }
    }

    #[tokio::test]
    async fn pump_writes_full_and_partial_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        let file = Arc::new(Mutex::new(File::create(&path).expect("create")));
        let long = "x".repeat(MAX_LINE + 10);
        let input = format!("hi\n\nsplit {long}\nno newline at end");
        let (mut w, r) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for chunk in input.as_bytes().chunks(1000) {
                w.write_all(chunk).await.expect("write");
            }
        });
        pump(r, "stdout", file).await;
        writer.await.expect("writer");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<(&str, &str)> = text
            .lines()
            .map(|l| {
                let mut p = l.splitn(4, ' ');
                let ts = p.next().unwrap_or_default();
                assert_eq!(ts.len(), 30, "{ts}");
                assert_eq!(p.next(), Some("stdout"));
                (p.next().unwrap_or_default(), p.next().unwrap_or_default())
            })
            .collect();
        let tags: Vec<&str> = lines.iter().map(|l| l.0).collect();
        assert_eq!(tags, ["F", "F", "P", "F", "F"]);
        assert_eq!(lines[0].1, "hi");
        assert_eq!(lines[1].1, "");
        assert_eq!(lines[2].1.len(), MAX_LINE);
        assert_eq!(format!("{}{}", lines[2].1, lines[3].1), format!("split {long}"));
        assert_eq!(lines[4].1, "no newline at end");
    }
}
