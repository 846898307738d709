//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's
//! `tools/leaderelection` (`leaderelection.go`, `resourcelock/leaselock.go`)
//! does for kube-controller-manager: with several API servers, exactly one
//! instance runs the controllers.
//!
//! A candidate reads the Lease every `retry_period`. It takes it when nobody
//! holds it or the holder's record has not changed for `lease_duration`
//! (judged by this candidate's own clock from when it last saw the record
//! change, so clocks need not agree), and renews it while leading. A leader
//! that cannot renew within `renew_deadline` stops leading. Writes are
//! compare-and-swap on the resourceVersion, so two candidates never both win.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use std::time::{Duration, Instant};

/// client-go's defaults for kube-controller-manager (`--leader-elect-*`).
#[derive(Clone, Debug)]
pub struct Timing {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Which Lease, who is asking, and how fast.
#[derive(Clone, Debug)]
pub struct Election {
    pub namespace: String,
    pub name: String,
    /// This candidate (upstream: `<hostname>_<uuid>`).
    pub identity: String,
    pub timing: Timing,
}

/// What a candidate remembers of the Lease between attempts.
#[derive(Default)]
struct Observed {
    /// The holder and renew time last seen, and when this candidate saw them change.
    record: Option<(Option<String>, Option<String>)>,
    at: Option<Instant>,
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

fn holder(l: &Lease) -> Option<String> {
    l.spec.as_ref().and_then(|s| s.holder_identity.clone()).filter(|h| !h.is_empty())
}

fn renew_time(l: &Lease) -> Option<String> {
    l.spec.as_ref().and_then(|s| s.renew_time.as_ref()).map(|t| t.0.to_string())
}

impl Election {
    fn spec(&self, acquire: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.timing.lease_duration.as_secs().max(1) as i32),
            acquire_time: Some(acquire.unwrap_or_else(now)),
            renew_time: Some(now()),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One attempt to take or renew the Lease (client-go's `tryAcquireOrRenew`):
    /// true when this candidate holds it afterwards.
    async fn try_acquire_or_renew(&self, api: &Api<Lease>, seen: &mut Observed) -> Result<bool, kube::Error> {
        let current = match api.get_opt(&self.name).await? {
            Some(l) => l,
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: Some(self.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(self.spec(None, 0)),
                };
                return match api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e),
                };
            }
        };
        let record = (holder(&current), renew_time(&current));
        if seen.record.as_ref() != Some(&record) {
            seen.record = Some(record.clone());
            seen.at = Some(Instant::now());
        }
        let mine = record.0.as_deref() == Some(self.identity.as_str());
        let duration = current
            .spec
            .as_ref()
            .and_then(|s| s.lease_duration_seconds)
            .map(|s| Duration::from_secs(s.max(1) as u64))
            .unwrap_or(self.timing.lease_duration);
        let expired = seen.at.is_none_or(|at| at.elapsed() > duration);
        if record.0.is_some() && !mine && !expired {
            return Ok(false);
        }
        let spec = current.spec.clone().unwrap_or_default();
        let transitions = spec.lease_transitions.unwrap_or(0);
        let mut next = current.clone();
        next.spec = Some(if mine {
            self.spec(spec.acquire_time.clone(), transitions)
        } else {
            self.spec(None, transitions + 1)
        });
        // The resourceVersion read above makes this a compare-and-swap.
        match api.replace(&self.name, &PostParams::default(), &next).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this candidate holds the Lease.
    pub async fn acquire(&self, client: &kube::Client) -> Leadership {
        let api: Api<Lease> = Api::namespaced(client.clone(), &self.namespace);
        let mut seen = Observed::default();
        loop {
            match self.try_acquire_or_renew(&api, &mut seen).await {
                Ok(true) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "became the leader");
                    return Leadership { api, election: self.clone(), seen, renewed: Instant::now() };
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, lease = %self.name, "leader election: reading the lease"),
            }
            tokio::time::sleep(self.timing.retry_period).await;
        }
    }
}

/// A held Lease; [`Leadership::keep`] renews it until it is lost.
pub struct Leadership {
    api: Api<Lease>,
    election: Election,
    seen: Observed,
    renewed: Instant,
}

impl Leadership {
    /// Renews every `retry_period`; returns when a renewal has not succeeded
    /// within `renew_deadline` or another candidate took the Lease.
    pub async fn keep(mut self) {
        let t = self.election.timing.clone();
        loop {
            tokio::time::sleep(t.retry_period).await;
            let attempt = tokio::time::timeout(t.renew_deadline, async {
                self.election.try_acquire_or_renew(&self.api, &mut self.seen).await
            })
            .await;
            match attempt {
                Ok(Ok(true)) => self.renewed = Instant::now(),
                Ok(Ok(false)) => {
                    tracing::warn!(lease = %self.election.name, "another candidate holds the lease: stopping");
                    return;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, lease = %self.election.name, "renewing the lease"),
                Err(_) => {}
            }
            if self.renewed.elapsed() > t.renew_deadline {
                tracing::warn!(lease = %self.election.name, "could not renew the lease in time: stopping");
                return;
            }
        }
    }
}
