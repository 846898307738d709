//! Cron schedules as the CronJob API and controller read them: robfig/cron v3's
//! standard parser (`ParseStandard`: five fields minute, hour, day of month,
//! month, day of week, with names, ranges, steps, `*` and `?`; the descriptors
//! `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`,
//! `@hourly` and `@every <Go duration>`; an optional `TZ=`/`CRON_TZ=` prefix)
//! with its error texts (`parser.go`), and the next activation after a time
//! (`spec.go` `SpecSchedule.Next`, `constantdelay.go`), in a time zone and
//! across DST changes. Pure: no I/O but the time zone database.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, Zoned};

/// A parse error, with robfig/cron's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn err(msg: String) -> ParseError {
    ParseError(msg)
}

/// Set in a field's bits when the field was `*` or `?` (robfig `starBit`).
const STAR: u64 = 1 << 63;

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [(&'static str, u32)],
}

const MINUTES: Bounds = Bounds { min: 0, max: 59, names: &[] };
const HOURS: Bounds = Bounds { min: 0, max: 23, names: &[] };
const DOM: Bounds = Bounds { min: 1, max: 31, names: &[] };
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &[("sun", 0), ("mon", 1), ("tue", 2), ("wed", 3), ("thu", 4), ("fri", 5), ("sat", 6)],
};

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// A crontab specification (robfig `SpecSchedule`), to the second.
    Spec(Spec),
    /// `@every <duration>` (robfig `ConstantDelaySchedule`): whole seconds, at least one.
    Every(SignedDuration),
}

/// The bit sets of each field, and the zone of a `TZ=` prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    second: u64,
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    /// `None`: the zone of the time given to [`Schedule::next`] (robfig's `time.Local`).
    zone: Option<TimeZone>,
}

/// Go's `time.LoadLocation` for a name (`UTC` and the IANA database); the
/// error is Go's text.
pub fn load_location(name: &str) -> Result<TimeZone, String> {
    if name.is_empty() || name == "UTC" {
        return Ok(TimeZone::UTC);
    }
    match jiff::tz::db().get(name) {
        // Go reads the file by name: the lookup is case-sensitive there.
        Ok(tz) if tz.iana_name().is_none_or(|n| n == name) => Ok(tz),
        _ => Err(format!("unknown time zone {name}")),
    }
}

/// robfig/cron `ParseStandard`.
pub fn parse_standard(spec: &str) -> Result<Schedule, ParseError> {
    if spec.is_empty() {
        return Err(err("empty spec string".into()));
    }
    let mut spec = spec;
    let mut zone = None;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        // Upstream slices up to the first space (and panics without one).
        let eq = spec.find('=').unwrap_or(0);
        let Some(sp) = spec.find(' ') else {
            return Err(err(format!("provided bad location {}: missing schedule", &spec[eq + 1..])));
        };
        let name = &spec[eq + 1..sp];
        zone = Some(load_location(name).map_err(|e| err(format!("provided bad location {name}: {e}")))?);
        spec = spec[sp..].trim();
    }
    if spec.starts_with('@') {
        return parse_descriptor(spec, zone);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(err(format!("expected exactly 5 fields, found {}: [{}]", fields.len(), fields.join(" "))));
    }
    Ok(Schedule::Spec(Spec {
        second: 1,
        minute: field(fields[0], &MINUTES)?,
        hour: field(fields[1], &HOURS)?,
        dom: field(fields[2], &DOM)?,
        month: field(fields[3], &MONTHS)?,
        dow: field(fields[4], &DOW)?,
        zone,
    }))
}

/// `getField`: a comma-separated list of ranges (empty items are skipped).
fn field(f: &str, b: &Bounds) -> Result<u64, ParseError> {
    let mut bits = 0;
    for expr in f.split(',').filter(|e| !e.is_empty()) {
        bits |= range(expr, b)?;
    }
    Ok(bits)
}

/// `getRange`: `number | number "-" number [ "/" number ]`, `*` or `?`.
fn range(expr: &str, b: &Bounds) -> Result<u64, ParseError> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_high.len() == 1;
    let (start, mut end, mut extra);
    if low_high[0] == "*" || low_high[0] == "?" {
        (start, end, extra) = (b.min, b.max, STAR);
    } else {
        start = int_or_name(low_high[0], b)?;
        end = match low_high.len() {
            1 => start,
            2 => int_or_name(low_high[1], b)?,
            _ => return Err(err(format!("too many hyphens: {expr}"))),
        };
        extra = 0;
    }
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = parse_uint(range_and_step[1])?;
            // "N/step" means "N-max/step".
            if single {
                end = b.max;
            }
            if step > 1 {
                extra = 0;
            }
            step
        }
        _ => return Err(err(format!("too many slashes: {expr}"))),
    };
    if start < b.min {
        return Err(err(format!("beginning of range ({start}) below minimum ({}): {expr}", b.min)));
    }
    if end > b.max {
        return Err(err(format!("end of range ({end}) above maximum ({}): {expr}", b.max)));
    }
    if start > end {
        return Err(err(format!("beginning of range ({start}) beyond end of range ({end}): {expr}")));
    }
    if step == 0 {
        return Err(err(format!("step of range should be a positive number: {expr}")));
    }
    let mut bits = 0u64;
    let mut i = start;
    while i <= end {
        bits |= 1 << i;
        i += step;
    }
    Ok(bits | extra)
}

fn int_or_name(expr: &str, b: &Bounds) -> Result<u32, ParseError> {
    let lower = expr.to_ascii_lowercase();
    if let Some((_, v)) = b.names.iter().find(|(n, _)| *n == lower) {
        return Ok(*v);
    }
    parse_uint(expr)
}

/// `mustParseInt`: Go's `strconv.Atoi`, then non-negative.
fn parse_uint(expr: &str) -> Result<u32, ParseError> {
    let digits = expr.strip_prefix(['+', '-']).unwrap_or(expr);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(err(format!("failed to parse int from {expr}: strconv.Atoi: parsing {expr:?}: invalid syntax")));
    }
    let n: i64 = expr.parse().map_err(|_| {
        err(format!("failed to parse int from {expr}: strconv.Atoi: parsing {expr:?}: value out of range"))
    })?;
    if n < 0 {
        return Err(err(format!("negative number ({n}) not allowed: {expr}")));
    }
    // Values past the field bounds are reported by the range checks.
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

fn all(b: &Bounds) -> u64 {
    let mut bits = 0u64;
    for i in b.min..=b.max {
        bits |= 1 << i;
    }
    bits | STAR
}

/// `parseDescriptor`.
fn parse_descriptor(d: &str, zone: Option<TimeZone>) -> Result<Schedule, ParseError> {
    let spec = |minute: u64, hour: u64, dom: u64, month: u64, dow: u64| {
        Ok(Schedule::Spec(Spec { second: 1, minute, hour, dom, month, dow, zone: zone.clone() }))
    };
    match d {
        "@yearly" | "@annually" => spec(1, 1, 1 << 1, 1 << 1, all(&DOW)),
        "@monthly" => spec(1, 1, 1 << 1, all(&MONTHS), all(&DOW)),
        "@weekly" => spec(1, 1, all(&DOM), all(&MONTHS), 1),
        "@daily" | "@midnight" => spec(1, 1, all(&DOM), all(&MONTHS), all(&DOW)),
        "@hourly" => spec(1, all(&HOURS), all(&DOM), all(&MONTHS), all(&DOW)),
        _ => match d.strip_prefix("@every ") {
            Some(dur) => {
                let dur = parse_go_duration(dur).map_err(|e| err(format!("failed to parse duration {d}: {e}")))?;
                // `Every`: at least a second, sub-second parts truncated.
                let secs = dur.as_secs().max(1);
                Ok(Schedule::Every(SignedDuration::from_secs(secs)))
            }
            None => Err(err(format!("unrecognized descriptor: {d}"))),
        },
    }
}

/// Go's `time.ParseDuration` (`[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`), with its errors.
pub fn parse_go_duration(s: &str) -> Result<SignedDuration, String> {
    let orig = s;
    let invalid = || format!("time: invalid duration {orig:?}");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(SignedDuration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.bytes().take_while(u8::is_ascii_digit).count();
                a.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = after.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(format!("time: missing unit in duration {orig:?}"));
        }
        let nanos: f64 = match unit {
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(format!("time: unknown unit {unit:?} in duration {orig:?}")),
        };
        let value: f64 = format!("{}.{}", if int_part.is_empty() { "0" } else { int_part }, frac_part)
            .trim_end_matches('.')
            .parse()
            .map_err(|_| invalid())?;
        total += value * nanos;
        if total > i64::MAX as f64 {
            return Err(invalid());
        }
        rest = after;
    }
    let nanos = if neg { -total } else { total };
    Ok(SignedDuration::from_nanos(nanos as i64))
}

impl Schedule {
    /// The next activation strictly after `t` (robfig `Next`), seen in `t`'s
    /// zone unless the schedule has its own; `None` if there is none within
    /// five years (robfig's zero time).
    pub fn next(&self, t: &Zoned) -> Option<Zoned> {
        match self {
            Schedule::Every(d) => {
                let back = SignedDuration::from_nanos(i64::from(t.subsec_nanosecond()));
                t.checked_add(*d - back).ok()
            }
            Schedule::Spec(s) => s.next(t),
        }
    }
}

/// Go's `time.Date` in `tz`: civil fields (days and months may overflow and
/// roll over), a time in a DST gap moves forward, an ambiguous one is the first.
fn date(y: i16, mo: i8, d: i8, h: i8, tz: &TimeZone) -> Option<Zoned> {
    DateTime::new(y, mo, d, h, 0, 0, 0).ok()?.to_zoned(tz.clone()).ok()
}

fn add_months(t: &Zoned, months: i32) -> Option<Zoned> {
    let dt = t.datetime().checked_add(jiff::Span::new().months(months)).ok()?;
    dt.to_zoned(t.time_zone().clone()).ok()
}

fn add_days(t: &Zoned, days: i32) -> Option<Zoned> {
    let dt = t.datetime().checked_add(jiff::Span::new().days(days)).ok()?;
    dt.to_zoned(t.time_zone().clone()).ok()
}

/// `Time.Truncate` to a multiple of `secs` since the epoch (absolute time).
fn truncate(t: &Zoned, secs: i64) -> Option<Zoned> {
    let s = t.timestamp().as_second();
    Timestamp::from_second(s - s.rem_euclid(secs)).ok().map(|ts| ts.to_zoned(t.time_zone().clone()))
}

impl Spec {
    fn day_matches(&self, t: &Zoned) -> bool {
        let dom = 1u64 << t.day() & self.dom > 0;
        let dow = 1u64 << t.weekday().to_sunday_zero_offset() & self.dow > 0;
        if self.dom & STAR > 0 || self.dow & STAR > 0 {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// robfig `SpecSchedule.Next`, step by step.
    fn next(&self, t: &Zoned) -> Option<Zoned> {
        let orig = t.time_zone().clone();
        let loc = self.zone.clone().unwrap_or_else(|| orig.clone());
        let t = t.with_time_zone(loc.clone());
        // The upcoming second.
        let back = SignedDuration::from_nanos(i64::from(t.subsec_nanosecond()));
        let mut t = t.checked_add(SignedDuration::from_secs(1) - back).ok()?;
        let mut added = false;
        let year_limit = t.year() + 5;
        'wrap: loop {
            if t.year() > year_limit {
                return None;
            }
            while 1u64 << t.month() & self.month == 0 {
                if !added {
                    added = true;
                    t = date(t.year(), t.month(), 1, 0, &loc)?;
                }
                t = add_months(&t, 1)?;
                if t.month() == 1 {
                    continue 'wrap;
                }
            }
            while !self.day_matches(&t) {
                if !added {
                    added = true;
                    t = date(t.year(), t.month(), t.day(), 0, &loc)?;
                }
                t = add_days(&t, 1)?;
                // Midnight may not exist (DST): go back to it, or to the next day.
                if t.hour() != 0 {
                    let h = i64::from(t.hour());
                    let shift = if h > 12 { 24 - h } else { -h };
                    t = t.checked_add(SignedDuration::from_hours(shift)).ok()?;
                }
                if t.day() == 1 {
                    continue 'wrap;
                }
            }
            while 1u64 << t.hour() & self.hour == 0 {
                if !added {
                    added = true;
                    t = date(t.year(), t.month(), t.day(), t.hour(), &loc)?;
                }
                t = t.checked_add(SignedDuration::from_hours(1)).ok()?;
                if t.hour() == 0 {
                    continue 'wrap;
                }
            }
            while 1u64 << t.minute() & self.minute == 0 {
                if !added {
                    added = true;
                    t = truncate(&t, 60)?;
                }
                t = t.checked_add(SignedDuration::from_mins(1)).ok()?;
                if t.minute() == 0 {
                    continue 'wrap;
                }
            }
            while 1u64 << t.second() & self.second == 0 {
                if !added {
                    added = true;
                    t = truncate(&t, 1)?;
                }
                t = t.checked_add(SignedDuration::from_secs(1)).ok()?;
                if t.second() == 0 {
                    continue 'wrap;
                }
            }
            return Some(t.with_time_zone(orig));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str, tz: &str) -> Zoned {
        let dt: DateTime = s.parse().unwrap();
        dt.to_zoned(load_location(tz).unwrap()).unwrap()
    }

    fn next(spec: &str, from: &str, tz: &str) -> String {
        let s = parse_standard(spec).unwrap();
        let n = s.next(&at(from, tz)).unwrap();
        n.datetime().to_string()
    }

    #[test]
    fn next_fire_times() {
        assert_eq!(next("*/1 * * * *", "2024-06-01T12:00:00", "UTC"), "2024-06-01T12:01:00");
        assert_eq!(next("*/1 * * * *", "2024-06-01T12:00:30.5", "UTC"), "2024-06-01T12:01:00");
        assert_eq!(next("*/15 * * * *", "2024-06-01T12:16:00", "UTC"), "2024-06-01T12:30:00");
        assert_eq!(next("0 0 * * *", "2024-12-31T23:59:59", "UTC"), "2025-01-01T00:00:00");
        assert_eq!(next("30 6-16/4 * * 1-5", "2024-06-01T00:00:00", "UTC"), "2024-06-03T06:30:00");
        assert_eq!(next("0 12 * jan,JUL sun", "2024-06-01T00:00:00", "UTC"), "2024-07-07T12:00:00");
        // Day of month OR day of week when both are restricted.
        assert_eq!(next("0 0 13 * fri", "2024-06-01T00:00:00", "UTC"), "2024-06-07T00:00:00");
        assert_eq!(next("0 0 29 2 *", "2025-01-01T00:00:00", "UTC"), "2028-02-29T00:00:00");
        assert_eq!(next("@hourly", "2024-06-01T12:00:00", "UTC"), "2024-06-01T13:00:00");
        assert_eq!(next("@weekly", "2024-06-01T12:00:00", "UTC"), "2024-06-02T00:00:00");
        assert_eq!(next("@yearly", "2024-06-01T12:00:00", "UTC"), "2025-01-01T00:00:00");
        assert_eq!(next("@every 1h30m", "2024-06-01T12:00:00.25", "UTC"), "2024-06-01T13:30:00");
        // Never (Feb 30): nothing within five years.
        assert!(parse_standard("0 0 30 2 *").unwrap().next(&at("2024-01-01T00:00:00", "UTC")).is_none());
    }

    #[test]
    fn zones_and_dst() {
        // In a zone: 09:00 New York is 13:00 UTC in summer.
        let s = parse_standard("TZ=America/New_York 0 9 * * *").unwrap();
        let n = s.next(&at("2024-06-01T00:00:00", "UTC")).unwrap();
        assert_eq!(n.timestamp().to_string(), "2024-06-01T13:00:00Z");
        assert_eq!(n.datetime().to_string(), "2024-06-01T13:00:00", "in the zone of the time given");
        // Spring forward (2024-03-10, 02:00 -> 03:00): 02:30 does not exist that day.
        assert_eq!(next("30 2 * * *", "2024-03-09T12:00:00", "America/New_York"), "2024-03-11T02:30:00");
        assert_eq!(next("0 * * * *", "2024-03-10T01:30:00", "America/New_York"), "2024-03-10T03:00:00");
        // Fall back (2024-11-03, 02:00 -> 01:00): the 01:00 hour comes twice.
        let first = at("2024-11-03T00:59:00", "America/New_York");
        let s = parse_standard("0 * * * *").unwrap();
        let a = s.next(&first).unwrap();
        let b = s.next(&a).unwrap();
        let c = s.next(&b).unwrap();
        assert_eq!(a.datetime().to_string(), "2024-11-03T01:00:00");
        assert_eq!(b.datetime().to_string(), "2024-11-03T01:00:00");
        assert_eq!(b.timestamp().as_second() - a.timestamp().as_second(), 3600);
        assert_eq!(c.datetime().to_string(), "2024-11-03T02:00:00");
        // Daily at midnight where midnight is skipped (Sao Paulo, 2018-11-04 00:00 -> 01:00):
        // robfig steps hours from 23:00 to 01:00 and so skips that day, as upstream does.
        assert_eq!(next("0 0 * * *", "2018-11-03T12:00:00", "America/Sao_Paulo"), "2018-11-05T00:00:00");
    }

    fn perr(spec: &str) -> String {
        parse_standard(spec).unwrap_err().0
    }

    #[test]
    fn upstream_error_texts() {
        assert_eq!(perr("bogus"), "expected exactly 5 fields, found 1: [bogus]");
        assert_eq!(perr("* * * * * *"), "expected exactly 5 fields, found 6: [* * * * * *]");
        assert_eq!(perr("61 * * * *"), "end of range (61) above maximum (59): 61");
        assert_eq!(perr("* * 0 * *"), "beginning of range (0) below minimum (1): 0");
        assert_eq!(perr("5-1 * * * *"), "beginning of range (5) beyond end of range (1): 5-1");
        assert_eq!(perr("*/0 * * * *"), "step of range should be a positive number: */0");
        assert_eq!(perr("1-2-3 * * * *"), "too many hyphens: 1-2-3");
        assert_eq!(perr("*/2/3 * * * *"), "too many slashes: */2/3");
        assert_eq!(perr("x * * * *"), "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax");
        assert_eq!(perr("* * * * 7"), "end of range (7) above maximum (6): 7");
        assert_eq!(perr("@often"), "unrecognized descriptor: @often");
        assert_eq!(perr("@every xyz"), "failed to parse duration @every xyz: time: invalid duration \"xyz\"");
        assert_eq!(perr("@every 5"), "failed to parse duration @every 5: time: missing unit in duration \"5\"");
        assert_eq!(
            perr("@every 5d"),
            "failed to parse duration @every 5d: time: unknown unit \"d\" in duration \"5d\""
        );
        assert_eq!(
            perr("TZ=Mars/Olympus * * * * *"),
            "provided bad location Mars/Olympus: unknown time zone Mars/Olympus"
        );
        assert!(parse_standard("CRON_TZ=Europe/Paris @daily").is_ok());
        assert!(parse_standard("? * * * *").is_ok());
        assert_eq!(parse_go_duration("1.5h").unwrap(), SignedDuration::from_mins(90));
        assert_eq!(parse_go_duration("-2m3s").unwrap(), SignedDuration::from_secs(-123));
    }
}
