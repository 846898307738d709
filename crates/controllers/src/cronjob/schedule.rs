//! When a CronJob runs (upstream `pkg/controller/cronjob/utils.go`
//! `mostRecentScheduleTime`, `nextScheduleTime`, `nextScheduleTimeDuration`,
//! `getJobName`, `formatSchedule`), pure. Times are seen in UTC (the zone a
//! kube-controller-manager normally runs in) unless the CronJob has `timeZone`.

use apimachinery::cron::{self, Schedule};
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// How many schedules were missed since the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    None,
    Few,
    /// More than 100: upstream warns (`TooManyMissedTimes`).
    Many,
}

/// What the controller knows of a CronJob's past.
pub struct History {
    pub created: Timestamp,
    pub last_schedule: Option<Timestamp>,
    pub starting_deadline_seconds: Option<i64>,
}

/// `formatSchedule` + `cron.ParseStandard`: a `timeZone` becomes a `TZ=` prefix.
pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Schedule, String> {
    let spec = match time_zone {
        Some(tz) if !schedule.contains("TZ") => format!("TZ={tz} {schedule}"),
        _ => schedule.to_string(),
    };
    cron::parse_standard(&spec).map_err(|e| e.0)
}

fn next(s: &Schedule, t: Timestamp) -> Option<Timestamp> {
    s.next(&t.to_zoned(TimeZone::UTC)).map(|z| z.timestamp())
}

/// `mostRecentScheduleTime`: (earliest time considered, the most recent
/// schedule time not after `now`, how many were missed).
pub fn most_recent(
    h: &History,
    now: Timestamp,
    s: &Schedule,
    with_deadline: bool,
) -> Result<(Timestamp, Option<Timestamp>, Missed), String> {
    let mut earliest = h.last_schedule.unwrap_or(h.created);
    if let (true, Some(d)) = (with_deadline, h.starting_deadline_seconds) {
        let deadline = now - SignedDuration::from_secs(d);
        if deadline > earliest {
            earliest = deadline;
        }
    }
    let Some(t1) = next(s, earliest) else { return Ok((earliest, None, Missed::None)) };
    if now < t1 {
        return Ok((earliest, None, Missed::None));
    }
    let Some(t2) = next(s, t1) else { return Ok((earliest, Some(t1), Missed::None)) };
    if now < t2 {
        return Ok((earliest, Some(t1), Missed::None));
    }
    let between = (t2.duration_since(t1).as_millis() as f64 / 1000.0).round() as i64;
    if between < 1 {
        return Err("time difference between two schedules is less than 1 second".into());
    }
    let elapsed = now.duration_since(t1).as_secs();
    let missed = elapsed / between + 1;
    // Start one interval early and let the schedule find the exact times.
    let mut t = t1 + SignedDuration::from_secs((missed - 2) * between);
    let mut recent = None;
    while let Some(n) = next(s, t).filter(|n| *n <= now) {
        recent = Some(n);
        t = n;
    }
    let kind = if missed > 100 { Missed::Many } else { Missed::Few };
    Ok((earliest, recent, kind))
}

/// `nextScheduleTime`: the schedule time to run now, if any.
pub fn to_run(h: &History, now: Timestamp, s: &Schedule) -> Result<(Option<Timestamp>, Missed), String> {
    let (_, recent, missed) = most_recent(h, now, s, true)?;
    Ok((recent.filter(|t| *t <= now), missed))
}

/// `nextScheduleTimeDuration`: how long until the next schedule time (plus
/// upstream's 100 ms).
pub fn requeue_after(h: &History, now: Timestamp, s: &Schedule) -> std::time::Duration {
    let base = match most_recent(h, now, s, false) {
        Err(_) => now,
        Ok((_, Some(t), _)) => t,
        Ok((earliest, None, Missed::None)) => earliest,
        Ok((_, None, _)) => now,
    };
    let at = next(s, base).unwrap_or(now + SignedDuration::from_hours(24 * 365));
    let d = at.duration_since(now) + SignedDuration::from_millis(100);
    std::time::Duration::try_from(d).unwrap_or_default()
}

/// `getJobName`: `<cronjob>-<scheduled time in minutes since the epoch>`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// The `batch.kubernetes.io/cronjob-scheduled-timestamp` value: RFC 3339 in the
/// CronJob's zone (Go's `Z07:00`: `Z` for a zero offset).
pub fn scheduled_annotation(scheduled: Timestamp, time_zone: Option<&str>) -> String {
    let tz = time_zone.and_then(|z| cron::load_location(z).ok()).unwrap_or(TimeZone::UTC);
    let z = scheduled.to_zoned(tz);
    if z.offset().seconds() == 0 {
        z.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn every_minute() -> Schedule {
        parse("*/1 * * * *", None).unwrap()
    }

    #[test]
    fn runs_at_each_minute_once() {
        let h = History { created: ts("2024-06-01T12:00:20Z"), last_schedule: None, starting_deadline_seconds: None };
        let s = every_minute();
        assert_eq!(to_run(&h, ts("2024-06-01T12:00:50Z"), &s).unwrap(), (None, Missed::None));
        assert_eq!(requeue_after(&h, ts("2024-06-01T12:00:50Z"), &s), std::time::Duration::from_millis(10_100));
        assert_eq!(
            to_run(&h, ts("2024-06-01T12:01:00.5Z"), &s).unwrap(),
            (Some(ts("2024-06-01T12:01:00Z")), Missed::None)
        );
        let after = History { last_schedule: Some(ts("2024-06-01T12:01:00Z")), ..h };
        assert_eq!(to_run(&after, ts("2024-06-01T12:01:30Z"), &s).unwrap().0, None);
        assert_eq!(requeue_after(&after, ts("2024-06-01T12:01:30Z"), &s), std::time::Duration::from_millis(30_100));
        assert_eq!(job_name("hello", ts("2024-06-01T12:01:00Z")), "hello-28620721");
    }

    #[test]
    fn missed_runs_and_deadlines() {
        let s = every_minute();
        let h = History { created: ts("2024-06-01T12:00:00Z"), last_schedule: None, starting_deadline_seconds: None };
        // Ten minutes late: only the most recent one runs.
        assert_eq!(
            to_run(&h, ts("2024-06-01T12:10:30Z"), &s).unwrap(),
            (Some(ts("2024-06-01T12:10:00Z")), Missed::Few)
        );
        // Hours late: too many missed.
        assert_eq!(to_run(&h, ts("2024-06-01T15:00:30Z"), &s).unwrap().1, Missed::Many);
        // A deadline only looks that far back.
        let d = History { starting_deadline_seconds: Some(20), ..h };
        assert_eq!(to_run(&d, ts("2024-06-01T12:10:30Z"), &s).unwrap().0, None);
        assert_eq!(to_run(&d, ts("2024-06-01T12:10:15Z"), &s).unwrap().0, Some(ts("2024-06-01T12:10:00Z")));
    }

    #[test]
    fn zones_in_names_and_annotations() {
        let s = parse("0 9 * * *", Some("Europe/Berlin")).unwrap();
        let h = History { created: ts("2024-06-01T00:00:00Z"), last_schedule: None, starting_deadline_seconds: None };
        // 09:00 in Berlin (CEST) is 07:00 UTC.
        assert_eq!(to_run(&h, ts("2024-06-01T07:00:01Z"), &s).unwrap().0, Some(ts("2024-06-01T07:00:00Z")));
        assert_eq!(
            scheduled_annotation(ts("2024-06-01T07:00:00Z"), Some("Europe/Berlin")),
            "2024-06-01T09:00:00+02:00"
        );
        assert_eq!(scheduled_annotation(ts("2024-06-01T07:00:00Z"), None), "2024-06-01T07:00:00Z");
        assert!(parse("bogus", None).is_err());
    }
}
