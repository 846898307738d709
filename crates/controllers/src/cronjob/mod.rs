//! CronJob controller (upstream `pkg/controller/cronjob/cronjob_controllerv2.go`
//! `syncCronJob`, `cleanupFinishedJobs`, and `utils.go`): at each schedule time
//! (in `timeZone`, else UTC) it creates the Job `<cronjob>-<minutes since the
//! epoch>` from `jobTemplate`, owned by the CronJob and annotated with
//! `batch.kubernetes.io/cronjob-scheduled-timestamp`; it honours
//! `startingDeadlineSeconds`, `concurrencyPolicy` (Allow, Forbid, Replace) and
//! `suspend`, keeps `status.active`, `lastScheduleTime` and
//! `lastSuccessfulTime`, and deletes the oldest finished Jobs beyond
//! `successfulJobsHistoryLimit` / `failedJobsHistoryLimit`. The key comes back
//! at the next schedule time. Schedule math is in [`schedule`].

mod schedule;

use crate::events::{Recorder, NORMAL, WARNING};
use crate::informer::Key;
use crate::queue::{resync, run_workers, Queue};
use crate::{metrics, util, Ctx, SyncError};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use std::sync::Arc;
use tokio::task::JoinHandle;

const COMPONENT: &str = "cronjob-controller";

pub fn start(ctx: &Ctx, tasks: &mut Vec<JoinHandle<()>>) {
    let (recorder, rec_task) = Recorder::new(ctx.client.clone(), COMPONENT);
    tasks.push(rec_task);
    let c = Arc::new(Cjc {
        client: ctx.client.clone(),
        inf: ctx.inf.clone(),
        queue: Queue::new(metrics::register("cronjob")),
        recorder,
    });
    ctx.inf.cronjobs.on_change_weak(&c, |h, _, new| {
        if let Some(cj) = new {
            h.queue.add(Key::of(cj));
        }
    });
    ctx.inf.jobs.on_change_weak(&c, |h, old, new| {
        if let Some(job) = new.or(old) {
            if let Some(key) = h.owner(job) {
                h.queue.add(key);
            }
        }
    });
    let (workers, period) = (ctx.config.workers, ctx.config.resync_period);
    tasks.push(tokio::spawn(async move {
        c.inf.wait_ready().await;
        tracing::debug!(controller = c.queue.name(), "caches synced, starting workers");
        let k = c.clone();
        let keys = move || k.inf.cronjobs.list().iter().map(|j| Key::of(&**j)).collect();
        let s = c.clone();
        let sync = move |key: Key| {
            let s = s.clone();
            async move { s.sync(&key).await }
        };
        tokio::join!(run_workers(c.queue.clone(), workers, sync), resync(c.queue.clone(), period, keys));
    }));
}

struct Cjc {
    client: kube::Client,
    inf: Arc<crate::informer::Informers>,
    queue: Arc<Queue>,
    recorder: Recorder,
}

/// `IsJobFinished`: the type of its Complete or Failed condition that is True.
fn finished(job: &Job) -> Option<&str> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

/// `getRef`.
fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

impl Cjc {
    /// The CronJob a Job's controller reference names (`getJobsToBeReconciled`
    /// matches on the name).
    fn owner(&self, job: &Job) -> Option<Key> {
        let r = util::controller_of(&job.metadata).filter(|r| r.kind == "CronJob")?;
        Some(Key::new(job.metadata.namespace.as_deref().unwrap_or_default(), &r.name))
    }

    async fn sync(&self, key: &Key) -> Result<(), SyncError> {
        let Some(cj) = self.inf.cronjobs.get_key(key) else { return Ok(()) };
        let jobs: Vec<Arc<Job>> =
            self.inf.jobs.list_ns(&key.namespace).into_iter().filter(|j| self.owner(j).as_ref() == Some(key)).collect();
        let mut cj = (*cj).clone();
        let before = cj.status.clone();
        let now = Timestamp::now();
        let (requeue, result) = match self.sync_cronjob(&mut cj, &jobs, now).await {
            Ok(r) => (r, Ok(())),
            Err(e) => (None, Err(e)),
        };
        self.cleanup_finished(&mut cj, &jobs).await;
        if cj.status != before {
            let api: Api<CronJob> = Api::namespaced(self.client.clone(), &key.namespace);
            match api.replace_status(&key.name, &PostParams::default(), &cj).await {
                Ok(_) => {}
                Err(e) if util::is_not_found(&e) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(d) = requeue {
            self.queue.add_after(key.clone(), d);
        }
        result
    }

    /// `syncCronJob`: the status from the Jobs, then the Job of the current
    /// schedule time if one is due. Returns when to look again.
    async fn sync_cronjob(
        &self,
        cj: &mut CronJob,
        jobs: &[Arc<Job>],
        now: Timestamp,
    ) -> Result<Option<std::time::Duration>, SyncError> {
        let key = Key::of(&*cj);
        let status = cj.status.get_or_insert_with(Default::default);
        let active = status.active.get_or_insert_with(Vec::new);
        let mut events = Vec::new();
        for j in jobs {
            let uid = j.metadata.uid.clone();
            let name = j.metadata.name.clone().unwrap_or_default();
            let found = active.iter().any(|a| a.uid == uid);
            match (found, finished(j)) {
                (false, None) => events.push((
                    WARNING,
                    "UnexpectedJob",
                    format!("Saw a job that the controller did not create or forgot: {name}"),
                )),
                (true, Some(cond)) => {
                    active.retain(|a| a.uid != uid);
                    events.push((NORMAL, "SawCompletedJob", format!("Saw completed job: {name}, condition: {cond}")));
                }
                (false, Some(_)) => {
                    let done = j.status.as_ref().and_then(|s| s.completion_time.clone());
                    if let Some(t) = done {
                        if status.last_successful_time.as_ref().is_none_or(|l| t.0 > l.0) {
                            status.last_successful_time = Some(t);
                        }
                    }
                }
                (true, None) => {}
            }
        }
        // Active Jobs that are gone (checked against the API, the store may lag).
        let api: Api<Job> = Api::namespaced(self.client.clone(), &key.namespace);
        let mut gone = Vec::new();
        for a in status.active.iter().flatten() {
            if jobs.iter().any(|j| j.metadata.uid == a.uid) {
                continue;
            }
            match api.get(a.name.as_deref().unwrap_or_default()).await {
                Err(e) if util::is_not_found(&e) => gone.push(a.clone()),
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
        }
        for a in gone {
            let name = a.name.clone().unwrap_or_default();
            events.push((NORMAL, "MissingJob", format!("Active job went missing: {name}")));
            if let Some(active) = status.active.as_mut() {
                active.retain(|x| x.uid != a.uid);
            }
        }
        for (ty, reason, msg) in events {
            self.recorder.event(&*cj, ty, reason, msg);
        }
        if cj.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let spec = cj.spec.clone().unwrap_or_default();
        if let Some(tz) = spec.time_zone.as_deref() {
            if let Err(e) = apimachinery::cron::load_location(tz) {
                self.recorder.event(&*cj, WARNING, "UnknownTimeZone", format!("invalid timeZone: {tz:?}: {e}"));
                return Ok(None);
            }
        }
        if spec.suspend == Some(true) {
            return Ok(None);
        }
        if spec.schedule.contains("TZ") {
            self.recorder.event(&*cj, WARNING, "UnsupportedSchedule", format!("CRON_TZ or TZ used in schedule {:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details", spec.schedule));
        }
        let sched = match schedule::parse(&spec.schedule, spec.time_zone.as_deref()) {
            Ok(s) => s,
            Err(e) => {
                self.recorder.event(
                    &*cj,
                    WARNING,
                    "UnparseableSchedule",
                    format!("unparseable schedule: {:?} : {e}", spec.schedule),
                );
                return Ok(None);
            }
        };
        let history = schedule::History {
            created: cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0),
            last_schedule: cj.status.as_ref().and_then(|s| s.last_schedule_time.as_ref()).map(|t| t.0),
            starting_deadline_seconds: spec.starting_deadline_seconds,
        };
        let next = || Some(schedule::requeue_after(&history, now, &sched));
        let (scheduled, missed) = match schedule::to_run(&history, now, &sched) {
            Ok(r) => r,
            Err(e) => {
                self.recorder.event(
                    &*cj,
                    WARNING,
                    "InvalidSchedule",
                    format!("invalid schedule: {} : {e}", spec.schedule),
                );
                return Ok(None);
            }
        };
        if missed == schedule::Missed::Many {
            self.recorder.event(
                &*cj,
                WARNING,
                "TooManyMissedTimes",
                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
            );
        }
        let Some(scheduled) = scheduled else { return Ok(next()) };
        if let Some(d) = spec.starting_deadline_seconds {
            if scheduled + k8s_openapi::jiff::SignedDuration::from_secs(d) < now {
                let when = scheduled.strftime("%a, %d %b %Y %H:%M:%S +0000");
                self.recorder.event(
                    &*cj,
                    WARNING,
                    "MissSchedule",
                    format!("Missed scheduled time to start a job: {when}"),
                );
                return Ok(next());
            }
        }
        let job_name = schedule::job_name(&key.name, scheduled);
        let status = cj.status.get_or_insert_with(Default::default);
        let already = status.active.iter().flatten().any(|a| a.name.as_deref() == Some(job_name.as_str()))
            || status.last_schedule_time.as_ref().is_some_and(|t| t.0 == scheduled);
        if already {
            return Ok(next());
        }
        let active_now = status.active.as_ref().is_some_and(|a| !a.is_empty());
        match spec.concurrency_policy.as_deref().unwrap_or("Allow") {
            "Forbid" if active_now => {
                self.recorder.event(
                    &*cj,
                    NORMAL,
                    "JobAlreadyActive",
                    "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
                );
                return Ok(next());
            }
            "Replace" => {
                for a in status.active.clone().unwrap_or_default() {
                    let name = a.name.clone().unwrap_or_default();
                    self.delete_job(cj, &name, a.uid.as_deref()).await?;
                }
            }
            _ => {}
        }
        let job = new_job(cj, &job_name, scheduled);
        let created = match api.create(&PostParams::default(), &job).await {
            Ok(j) => {
                self.recorder.event(&*cj, NORMAL, "SuccessfulCreate", format!("Created job {job_name}"));
                j
            }
            Err(e) if util::is_namespace_terminating(&e) => return Err(e.into()),
            Err(e) if util::is_already_exists(&e) => {
                let j = api.get(&job_name).await?;
                let ours = util::controller_of(&j.metadata).is_some_and(|r| Some(&r.uid) == cj.metadata.uid.as_ref());
                let listed = cj
                    .status
                    .as_ref()
                    .and_then(|s| s.active.as_ref())
                    .is_some_and(|a| a.iter().any(|x| x.uid == j.metadata.uid));
                if !ours || listed {
                    return Ok(None);
                }
                j
            }
            Err(e) => {
                self.recorder.event(
                    &*cj,
                    WARNING,
                    "FailedCreate",
                    format!("Error creating job: {}", util::api_message(&e)),
                );
                return Err(e.into());
            }
        };
        let status = cj.status.get_or_insert_with(Default::default);
        status.active.get_or_insert_with(Vec::new).push(job_ref(&created));
        status.last_schedule_time = Some(Time(scheduled));
        let history = schedule::History { last_schedule: Some(scheduled), ..history };
        Ok(Some(schedule::requeue_after(&history, now, &sched)))
    }

    /// `deleteJob`: the Job (its pods in the background) and its active entry.
    async fn delete_job(&self, cj: &mut CronJob, name: &str, uid: Option<&str>) -> Result<(), SyncError> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), &Key::of(&*cj).namespace);
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(e) if util::is_not_found(&e) => {}
            Err(e) => {
                self.recorder.event(&*cj, WARNING, "FailedDelete", format!("Deleted job: {}", util::api_message(&e)));
                return Err(e.into());
            }
        }
        if let Some(active) = cj.status.as_mut().and_then(|s| s.active.as_mut()) {
            active.retain(|a| a.uid.as_deref() != uid);
        }
        self.recorder.event(&*cj, NORMAL, "SuccessfulDelete", format!("Deleted job {name}"));
        Ok(())
    }

    /// `cleanupFinishedJobs` + `removeOldestJobs`: oldest `startTime` first.
    async fn cleanup_finished(&self, cj: &mut CronJob, jobs: &[Arc<Job>]) {
        let spec = cj.spec.clone().unwrap_or_default();
        for (kind, limit) in
            [("Complete", spec.successful_jobs_history_limit), ("Failed", spec.failed_jobs_history_limit)]
        {
            let Some(limit) = limit else { continue };
            let mut done: Vec<&Arc<Job>> = jobs.iter().filter(|j| finished(j) == Some(kind)).collect();
            let excess = done.len().saturating_sub(limit.max(0) as usize);
            if excess == 0 {
                continue;
            }
            // `byJobStartTime`: jobs without a start time last, then by name.
            done.sort_by(|a, b| {
                let start = |j: &Job| j.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
                match (start(a), start(b)) {
                    (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.metadata.name.cmp(&b.metadata.name)),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => a.metadata.name.cmp(&b.metadata.name),
                }
            });
            for j in &done[..excess] {
                let name = j.metadata.name.clone().unwrap_or_default();
                if let Err(e) = self.delete_job(cj, &name, j.metadata.uid.as_deref()).await {
                    tracing::debug!(cronjob = %Key::of(&*cj), job = %name, error = %e, "could not delete a finished job");
                }
            }
        }
    }
}

/// `getJobFromTemplate2`.
fn new_job(cj: &CronJob, name: &str, scheduled: Timestamp) -> Job {
    let spec = cj.spec.clone().unwrap_or_default();
    let tmeta = spec.job_template.metadata.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    annotations.insert(
        apimachinery::cronjob::SCHEDULED_TIMESTAMP_ANNOTATION.into(),
        schedule::scheduled_annotation(scheduled, spec.time_zone.as_deref()),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: cj.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![util::new_controller_ref(&cj.metadata, "batch/v1", "CronJob")]),
            ..Default::default()
        },
        spec: spec.job_template.spec,
        status: None,
    }
}
