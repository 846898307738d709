//! Adopting the table an earlier run left behind (a restarted proxy or `rkube up`): the
//! first sync reads the kernel's table back over netlink ([`KernelTable`]) and, when its
//! skeleton is the one this configuration writes (the table comment's hash), sends only
//! the difference instead of rewriting everything. Endpoint groups keep the ids and slots
//! the kernel has (read from each service chain's `ct mark set numgen ... offset` rule and
//! the `endpoints` map), so unchanged services need no statement at all, and ClientIP
//! affinity entries survive the restart.
//!
//! Anything unexpected (no table, another skeleton, a missing base chain or map, an
//! element that does not decode) means no adoption: the caller does a full sync.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use crate::model::ServicePortInfo;
use crate::netlink::{self, Data, Expr, KernelTable};
use crate::proxier::{build_state, DesiredPort, Ops, State};
use crate::render::{self, Fragment, Group, Groups, MapId, MAX_GROUP_ID, SLOT_BITS};
use crate::ProxyConfig;

/// The adopted state and the transaction that makes the kernel's table match it.
pub(crate) struct Plan {
    pub(crate) state: State,
    pub(crate) groups: Groups,
    pub(crate) ops: Ops,
}

/// Plans the adoption of `kernel` for `desired`; `Err` says why the table cannot be adopted.
pub(crate) fn plan<D: Borrow<DesiredPort>>(
    cfg: &ProxyConfig,
    desired: &[D],
    kernel: &KernelTable,
) -> Result<Plan, String> {
    let want_comment = render::table_comment(cfg);
    if kernel.comment.as_deref() != Some(want_comment.as_str()) {
        return Err(format!("the table's comment is {:?}, not {want_comment:?}", kernel.comment));
    }
    let base: HashSet<String> = render::base_chain_names(cfg).into_iter().collect();
    if let Some(missing) = base.iter().find(|c| !kernel.chains.contains(*c)) {
        return Err(format!("base chain {missing} is missing"));
    }
    if let Some(missing) = MapId::ALL.iter().find(|m| !kernel.sets.contains(m.name())) {
        return Err(format!("map {} is missing", missing.name()));
    }

    let mut found = kernel_groups(kernel);
    let used: HashSet<u32> = found.values().map(|g| g.id).collect();
    let mut groups = Groups::with_used(&used);
    let (state, _) = build_state(cfg, desired, &mut groups, |info: &ServicePortInfo| {
        let mut f = Fragment::default();
        for chain in [render::cluster_chain_name(info), render::local_chain_name(info)] {
            if let Some(g) = found.remove(&chain) {
                f.groups.push(g);
            }
        }
        (!f.groups.is_empty()).then_some(f)
    });
    // Ids of chains that are going away (their elements and chains are deleted below).
    let kept: HashSet<u32> = state.all().flat_map(|s| s.frag.groups.iter().map(|g| g.id)).collect();
    for id in used.difference(&kept) {
        groups.release(*id);
    }

    let mut ops = Ops::default();
    let mut desired_chains: Vec<(&String, &Vec<String>)> = Vec::new();
    let mut desired_sets: HashMap<&str, u32> = HashMap::new();
    for s in state.all() {
        desired_chains.extend(s.frag.chains.iter().map(|(n, r)| (n, r)));
        desired_sets.extend(s.frag.affinity_sets.iter().map(|(n, t)| (n.as_str(), *t)));
    }
    desired_chains.sort();
    let desired_names: HashSet<&str> = desired_chains.iter().map(|(n, _)| n.as_str()).collect();
    for (name, rules) in &desired_chains {
        if !kernel.chains.contains(*name) {
            ops.add_chains.push((*name).clone());
            ops.rules.push(((*name).clone(), (*rules).clone()));
        } else if !same_rules(kernel.rules.get(*name), rules) {
            ops.flush_chains.push((*name).clone());
            ops.rules.push(((*name).clone(), (*rules).clone()));
        }
    }
    let mut stale: Vec<&String> =
        kernel.chains.iter().filter(|c| !base.contains(*c) && !desired_names.contains(c.as_str())).collect();
    stale.sort();
    for c in stale {
        ops.flush_chains.push(c.clone());
        ops.del_chains.push(c.clone());
    }
    let mut new_sets: Vec<(&str, u32)> =
        desired_sets.iter().filter(|(n, _)| !kernel.sets.contains(**n)).map(|(n, t)| (*n, *t)).collect();
    new_sets.sort();
    ops.add_sets = new_sets.into_iter().map(|(n, t)| (n.to_string(), t)).collect();
    let mut old_sets: Vec<&String> =
        kernel.sets.iter().filter(|n| n.starts_with("affinity-") && !desired_sets.contains_key(n.as_str())).collect();
    old_sets.sort();
    ops.del_sets = old_sets.into_iter().cloned().collect();

    for (map, elems) in &kernel.elements {
        for (key, value) in elems {
            ops.touched.insert((*map, key.clone()), Some(value.clone()));
        }
    }
    for key in state.elems.entries.keys() {
        ops.touched.entry(key.clone()).or_insert(None);
    }
    Ok(Plan { state, groups, ops })
}

/// The kernel chain's rules are the desired ones (each in the encoder's subset and equal).
fn same_rules(kernel: Option<&Vec<Option<Vec<Expr>>>>, desired: &[String]) -> bool {
    let kernel = kernel.map(Vec::as_slice).unwrap_or_default();
    kernel.len() == desired.len()
        && kernel.iter().zip(desired).all(|(k, d)| k.is_some() && *k == netlink::encode_rule(d))
}

/// Endpoint groups found in the kernel: a chain whose only rule is `ct mark set numgen
/// random mod N offset <id << 16>` (or `ct mark set <id << 16>` for one endpoint), with its
/// N slots in the `endpoints` map.
fn kernel_groups(kernel: &KernelTable) -> HashMap<String, Group> {
    let mut out = HashMap::new();
    let mut ids: HashSet<u32> = HashSet::new();
    let slots_map = kernel.elements.get(&MapId::Endpoints);
    let mut chains: Vec<(&String, &Vec<Option<Vec<Expr>>>)> = kernel.rules.iter().collect();
    // Sorted, so which of two chains claiming the same id wins does not depend on hashing.
    chains.sort_by(|a, b| a.0.cmp(b.0));
    for (chain, rules) in chains {
        let [Some(exprs)] = rules.as_slice() else { continue };
        let (base, n) = match exprs.as_slice() {
            [Expr::NumgenRandom { modulus, offset, .. }, Expr::CtMarkSet { .. }] => (*offset, *modulus),
            [Expr::Immediate { data: Data::Value(v), .. }, Expr::CtMarkSet { .. }] => match <[u8; 4]>::try_from(&v[..])
            {
                Ok(b) => (u32::from_ne_bytes(b), 1),
                Err(_) => continue,
            },
            _ => continue,
        };
        let id = base >> SLOT_BITS;
        if base & ((1 << SLOT_BITS) - 1) != 0 || id == 0 || id > MAX_GROUP_ID || ids.contains(&id) {
            continue;
        }
        let slots: Option<Vec<(Ipv4Addr, u16)>> = (0..n)
            .map(|i| {
                let v = slots_map?.get(&(base + i).to_string())?.as_deref()?;
                let (ip, port) = v.split_once(" . ")?;
                Some((ip.parse().ok()?, port.parse().ok()?))
            })
            .collect();
        let Some(slots) = slots else { continue };
        ids.insert(id);
        out.insert(chain.clone(), Group { chain: chain.clone(), id, slots });
    }
    out
}
