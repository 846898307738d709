//! What both servers do with a query: answer the cluster zone from a
//! [`ClusterView`] (or forward it to the cluster DNS), chase ExternalName CNAMEs
//! upstream, and forward everything else through the cache.

use crate::cache::{CachedAnswer, DnsCache, Lookup};
use crate::metrics::Metrics;
use crate::upstream::Upstream;
use crate::view::{ClusterView, Resolution, Zone};
use crate::wire::response_to;
use futures::future::BoxFuture;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// The answer, now or later.
pub(crate) enum Handled {
    Ready(Message),
    /// Needs an upstream exchange: run it off the receive loop.
    Pending(BoxFuture<'static, Message>),
}

pub(crate) struct Resolver {
    pub zone: Zone,
    pub view: Option<ClusterView>,
    /// Where the cluster zone and reverse names go when there is no view (the
    /// node-local cache forwarding to the cluster DNS over TCP).
    pub cluster_dns: Option<Upstream>,
    pub upstream: Upstream,
    pub cache: Option<DnsCache>,
    pub metrics: Arc<Metrics>,
}

fn is_reverse(name: &Name) -> bool {
    let mut labels: Vec<&[u8]> = name.iter().collect();
    let Some(last) = labels.pop() else { return false };
    let Some(second) = labels.pop() else { return false };
    last.eq_ignore_ascii_case(b"arpa")
        && (second.eq_ignore_ascii_case(b"in-addr") || second.eq_ignore_ascii_case(b"ip6"))
}

fn from_resolution(req: &Message, res: Resolution) -> Message {
    let mut resp = response_to(req);
    resp.metadata.authoritative = true;
    resp.metadata.response_code = res.rcode;
    resp.answers = res.answers;
    resp.authorities = res.authorities;
    resp.additionals = res.additionals;
    resp
}

fn from_cached(req: &Message, ans: CachedAnswer) -> Message {
    let mut resp = response_to(req);
    resp.metadata.response_code = ans.rcode;
    resp.answers = ans.answers;
    resp.authorities = ans.authorities;
    resp.additionals = ans.additionals;
    resp
}

fn from_upstream(req: &Message, up: Message) -> Message {
    let mut resp = response_to(req);
    resp.metadata.response_code = up.response_code;
    resp.metadata.authoritative = up.authoritative;
    resp.answers = up.answers;
    resp.authorities = up.authorities;
    resp.additionals = up.additionals;
    resp
}

fn servfail(req: &Message) -> Message {
    let mut resp = response_to(req);
    resp.metadata.response_code = ResponseCode::ServFail;
    resp
}

impl Resolver {
    pub(crate) fn handle(self: &Arc<Self>, req: Message) -> Handled {
        let Some(query) = req.queries.first().cloned() else { return Handled::Ready(servfail(&req)) };
        let in_class = matches!(query.query_class(), DNSClass::IN | DNSClass::ANY);
        if !in_class && self.zone.contains(query.name()) {
            // The cluster zone exists in class IN only.
            let mut resp = response_to(&req);
            resp.metadata.response_code = ResponseCode::Refused;
            return Handled::Ready(resp);
        }
        if let Some(view) = &self.view {
            if let Some(res) = view.resolve(&self.zone, &query) {
                Metrics::inc(&self.metrics.cluster_answers);
                let Some((target, qtype)) = res.chase.clone() else {
                    return Handled::Ready(from_resolution(&req, res));
                };
                // An ExternalName Service: the CNAME, then the target's records from upstream.
                let this = self.clone();
                return Handled::Pending(Box::pin(async move {
                    let mut resp = from_resolution(&req, res);
                    let mut q = Query::query(target, qtype);
                    q.set_query_class(query.query_class());
                    let ans = match this.probe(&q) {
                        (Some(fresh), _) => Some(fresh),
                        (None, stale) => this.fetch(&q, req.recursion_desired, req.checking_disabled, stale).await,
                    };
                    if let Some(ans) = ans {
                        resp.answers.extend(ans.answers);
                    }
                    resp
                }));
            }
        }
        if self.cluster_dns.is_some() && (self.zone.contains(query.name()) || is_reverse(query.name())) {
            let this = self.clone();
            return Handled::Pending(Box::pin(async move {
                Metrics::inc(&this.metrics.upstream_requests);
                let Some(cluster) = this.cluster_dns.as_ref() else { return servfail(&req) };
                match cluster.exchange(&query, req.recursion_desired, req.checking_disabled).await {
                    Ok(up) => from_upstream(&req, up),
                    Err(e) => {
                        Metrics::inc(&this.metrics.upstream_failures);
                        tracing::debug!(error = %e, name = %query.name(), "cluster DNS exchange failed");
                        servfail(&req)
                    }
                }
            }));
        }
        let (fresh, stale) = self.probe(&query);
        if let Some(ans) = fresh {
            return Handled::Ready(from_cached(&req, ans));
        }
        let this = self.clone();
        Handled::Pending(Box::pin(async move {
            match this.fetch(&query, req.recursion_desired, req.checking_disabled, stale).await {
                Some(ans) => from_cached(&req, ans),
                None => servfail(&req),
            }
        }))
    }

    /// Look `query` up in the cache: a fresh answer, or a stale one to fall back on.
    fn probe(&self, query: &Query) -> (Option<CachedAnswer>, Option<CachedAnswer>) {
        let Some(cache) = &self.cache else { return (None, None) };
        match cache.get(query.name(), query.query_type(), query.query_class(), Instant::now()) {
            Lookup::Fresh(ans) => {
                let c =
                    if ans.is_negative() { &self.metrics.cache_hits_denial } else { &self.metrics.cache_hits_success };
                Metrics::inc(c);
                (Some(ans), None)
            }
            Lookup::Stale(ans) => {
                Metrics::inc(&self.metrics.cache_misses);
                (None, Some(ans))
            }
            Lookup::Miss => {
                Metrics::inc(&self.metrics.cache_misses);
                (None, None)
            }
        }
    }

    /// Ask upstream and cache the answer; on failure fall back on `stale`.
    async fn fetch(&self, query: &Query, rd: bool, cd: bool, stale: Option<CachedAnswer>) -> Option<CachedAnswer> {
        Metrics::inc(&self.metrics.upstream_requests);
        match self.upstream.exchange(query, rd, cd).await {
            Ok(up) => {
                if let Some(cache) = &self.cache {
                    let kept = cache.insert(query.name(), query.query_type(), query.query_class(), &up, Instant::now());
                    self.metrics.cache_entries.store(cache.len() as u64, Ordering::Relaxed);
                    if let Some(kept) = kept {
                        // Served as later hits will be: TTLs capped at the cache's limit.
                        return Some(kept);
                    }
                }
                Some(CachedAnswer {
                    rcode: up.response_code,
                    answers: up.answers,
                    authorities: up.authorities,
                    additionals: up.additionals,
                })
            }
            Err(e) => {
                Metrics::inc(&self.metrics.upstream_failures);
                tracing::debug!(error = %e, name = %query.name(), "upstream exchange failed");
                if stale.is_some() {
                    Metrics::inc(&self.metrics.cache_served_stale);
                }
                stale
            }
        }
    }
}
