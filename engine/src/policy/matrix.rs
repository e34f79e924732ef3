//! Every pod pair at once: per-rule peer sets and per-pod allowed sets as bitsets, so the work
//! is (rules × pods) + (pods² / 64) instead of pods² × rules.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use super::admin::{AdminAction, AdminPeerSpec, AdminRuleSpec, admin_rules};
use super::index::{PolicyIndex, rules_for};
use super::spec::{NamedPort, NamespaceMatch, PeerSpec, RuleSpec};
use super::types::{Direction, EvalError, IpFamily, Protocol};
use kube::core::SelectorExt;

/// A fixed-size set of pod positions (positions in the matrix's pod list).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bits(Vec<u64>);

impl Bits {
    fn empty(len: usize) -> Self {
        Bits(vec![0; len.div_ceil(64)])
    }

    fn full(len: usize) -> Self {
        let mut bits = Bits(vec![u64::MAX; len.div_ceil(64)]);
        if !len.is_multiple_of(64)
            && let Some(last) = bits.0.last_mut()
        {
            *last = (1u64 << (len % 64)) - 1;
        }
        bits
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    fn or_with(&mut self, other: &Bits) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= b;
        }
    }

    fn or_with_and(&mut self, x: &Bits, y: &Bits) {
        for ((a, b), c) in self.0.iter_mut().zip(&x.0).zip(&y.0) {
            *a |= b & c;
        }
    }

    fn and_with(&mut self, other: &Bits) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a &= b;
        }
    }

    fn and_not(&mut self, other: &Bits) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a &= !b;
        }
    }
}

/// Which destinations a rule's `ports` admit for the matrix's port/protocol.
enum PortsOk {
    All,
    None,
    Some(Bits),
}

/// The truth table for one port/protocol over a list of pods.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub port: u16,
    pub protocol: Protocol,
    /// Pods as `namespace/name`, rows (sources) and columns (destinations) in this order.
    pub pods: Vec<String>,
    /// Row-major: `allowed[from * pods.len() + to]`.
    allowed: Vec<bool>,
}

/// One cell of the matrix, as `-o json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatrixEntry {
    pub from: String,
    pub to: String,
    pub allowed: bool,
}

impl Matrix {
    pub fn allowed(&self, from: usize, to: usize) -> bool {
        self.allowed[from * self.pods.len() + to]
    }

    /// One pod pair of each class of the table, in its order, never a pod with itself. Pods
    /// whose rows are equal are alike as sources and pods whose columns are equal alike as
    /// destinations, so every pair of a class (a row kind × a column kind) has the same answer:
    /// probing one pair tests the class.
    pub fn classes(&self) -> Vec<MatrixEntry> {
        let n = self.pods.len();
        let kinds = |line: &dyn Fn(usize) -> Vec<bool>| -> Vec<usize> {
            let mut seen: HashMap<Vec<bool>, usize> = HashMap::new();
            (0..n)
                .map(|i| {
                    let next = seen.len();
                    *seen.entry(line(i)).or_insert(next)
                })
                .collect()
        };
        let rows = kinds(&|from| (0..n).map(|to| self.allowed(from, to)).collect());
        let columns = kinds(&|to| (0..n).map(|from| self.allowed(from, to)).collect());
        let mut taken = BTreeSet::new();
        let mut picked = vec![];
        for (from, row) in rows.iter().enumerate() {
            for (to, column) in columns.iter().enumerate().filter(|&(to, _)| to != from) {
                if taken.insert((*row, *column)) {
                    picked.push(MatrixEntry {
                        from: self.pods[from].clone(),
                        to: self.pods[to].clone(),
                        allowed: self.allowed(from, to),
                    });
                }
            }
        }
        picked
    }

    /// Every pair, sources in order, then destinations in order.
    pub fn entries(&self) -> impl Iterator<Item = MatrixEntry> + '_ {
        let n = self.pods.len();
        (0..n).flat_map(move |from| {
            (0..n).map(move |to| MatrixEntry {
                from: self.pods[from].clone(),
                to: self.pods[to].clone(),
                allowed: self.allowed(from, to),
            })
        })
    }
}

impl PolicyIndex {
    /// The truth table over the pods in `namespaces` (every pod when empty), ordered by namespace
    /// and name. Agrees with [`PolicyIndex::evaluate`] for every pair.
    pub fn matrix(&self, port: u16, protocol: Protocol, namespaces: &[String]) -> Result<Matrix, EvalError> {
        if port == 0 {
            return Err(EvalError::PortZero);
        }
        for namespace in namespaces {
            if !self.namespaces.contains_key(namespace) {
                return Err(EvalError::UnknownNamespace(namespace.clone()));
            }
        }
        let wanted: BTreeSet<&str> = namespaces.iter().map(String::as_str).collect();
        let mut members: Vec<usize> = (0..self.pods.len())
            .filter(|&i| wanted.is_empty() || wanted.contains(self.pods[i].namespace.as_str()))
            .collect();
        members.sort_by(|&a, &b| {
            let (pa, pb) = (&self.pods[a], &self.pods[b]);
            (&pa.namespace, &pa.name).cmp(&(&pb.namespace, &pb.name))
        });
        let n = members.len();

        // Matrix positions grouped by namespace, for peers that only look at some namespaces.
        let mut by_namespace: HashMap<&str, Vec<usize>> = HashMap::new();
        for (pos, &i) in members.iter().enumerate() {
            by_namespace
                .entry(self.pods[i].namespace.as_str())
                .or_default()
                .push(pos);
        }

        // A family's packets carry only that family's addresses, and an ipBlock admits only its
        // own family's: each family present is a table of its own, and a pair is allowed when
        // every family its packets can carry is (as `evaluate` decides a flow).
        let bit = |f: IpFamily| match f {
            IpFamily::V4 => 1u8,
            IpFamily::V6 => 2u8,
        };
        let masks: Vec<u8> = members
            .iter()
            .map(|&i| {
                self.pods[i]
                    .ips
                    .iter()
                    .fold(0, |m, ip| m | bit(IpFamily::of(*ip)))
            })
            .collect();
        let present = masks.iter().fold(0, |m, x| m | x);
        let tables: Vec<(u8, Vec<bool>)> = [IpFamily::V4, IpFamily::V6]
            .into_iter()
            .filter(|&f| present & bit(f) != 0)
            .map(|f| {
                (
                    bit(f),
                    self.table(&members, &by_namespace, port, protocol, Some(f)),
                )
            })
            .collect();
        let tables = if tables.is_empty() {
            vec![(0, self.table(&members, &by_namespace, port, protocol, None))]
        } else {
            tables
        };
        let mut allowed = Vec::with_capacity(n * n);
        for from in 0..n {
            for to in 0..n {
                // The families this pair's packets can carry, as `PolicyIndex::flow_families` says.
                let shared = masks[from] & masks[to];
                let carried = if shared != 0 {
                    shared
                } else {
                    masks[from] | masks[to]
                };
                let cell = tables
                    .iter()
                    .filter(|(f, _)| carried == 0 || *f == 0 || carried & f != 0)
                    .all(|(_, table)| table[from * n + to]);
                allowed.push(cell);
            }
        }
        Ok(Matrix {
            port,
            protocol,
            pods: members
                .iter()
                .map(|&i| format!("{}/{}", self.pods[i].namespace, self.pods[i].name))
                .collect(),
            allowed,
        })
    }
}

impl PolicyIndex {
    /// The truth table of one address family's packets (`None`: no pod has an address).
    fn table(
        &self,
        members: &[usize],
        by_namespace: &HashMap<&str, Vec<usize>>,
        port: u16,
        protocol: Protocol,
        family: Option<IpFamily>,
    ) -> Vec<bool> {
        let n = members.len();
        let mut work = Work {
            index: self,
            members,
            by_namespace,
            port,
            protocol,
            family,
            peer_cache: HashMap::new(),
            ports_cache: HashMap::new(),
            selecting: HashMap::new(),
            admin_peer_cache: HashMap::new(),
            admin_ports_cache: HashMap::new(),
        };
        // Sources each destination admits (ingress), destinations each source may reach (egress).
        let mut ingress_ok = Vec::with_capacity(n);
        let mut egress_ok = Vec::with_capacity(n);
        for (pos, &i) in members.iter().enumerate() {
            ingress_ok.push(work.allowed_set(i, pos, Direction::Ingress));
            egress_ok.push(work.allowed_set(i, pos, Direction::Egress));
        }
        let mut allowed = Vec::with_capacity(n * n);
        for (from, egress) in egress_ok.iter().enumerate() {
            for (to, ingress) in ingress_ok.iter().enumerate() {
                allowed.push(egress.get(to) && ingress.get(from));
            }
        }
        allowed
    }
}

struct Work<'a> {
    index: &'a PolicyIndex,
    members: &'a [usize],
    by_namespace: &'a HashMap<&'a str, Vec<usize>>,
    port: u16,
    protocol: Protocol,
    /// The address family whose packets the table decides.
    family: Option<IpFamily>,
    /// Remote pods each rule's peers match, by (policy, direction, rule).
    peer_cache: HashMap<(usize, Direction, usize), Bits>,
    /// Destinations each rule's ports admit, by (policy, direction, rule).
    ports_cache: HashMap<(usize, Direction, usize), PortsOk>,
    /// Policies selecting each pod, computed once per pod for both directions.
    selecting: HashMap<usize, Vec<usize>>,
    /// Remote pods each admin rule's peers match, by (admin policy, direction, rule).
    admin_peer_cache: HashMap<(usize, Direction, usize), Bits>,
    /// Destinations each admin rule's ports admit, by (admin policy, direction, rule).
    admin_ports_cache: HashMap<(usize, Direction, usize), PortsOk>,
}

impl Work<'_> {
    /// For the pod at matrix position `pos` (pod `i`): which remote positions the `direction` side
    /// admits over every tier (Admin, NetworkPolicy, Baseline, default allow).
    fn allowed_set(&mut self, i: usize, pos: usize, direction: Direction) -> Bits {
        let (network_policy, isolated) = self.network_policy_set(i, pos, direction);
        if self.index.admin.is_empty() {
            return network_policy;
        }
        let n = self.members.len();
        let mut allowed = Bits::empty(n);
        let admin_order = self.index.admin.admin_order.clone();
        let mut next = self.walk_tier(&admin_order, i, pos, direction, Bits::full(n), &mut allowed);
        if isolated {
            next.and_with(&network_policy);
            allowed.or_with(&next);
            return allowed;
        }
        let baseline_order = self.index.admin.baseline_order.clone();
        let rest = self.walk_tier(&baseline_order, i, pos, direction, next, &mut allowed);
        // Whatever no tier decided is allowed by default.
        allowed.or_with(&rest);
        allowed
    }

    /// Apply one tier's policies (in `order`) to the remote positions in `undecided`: Accept adds
    /// to `allowed`, Deny drops, Pass hands on. Returns the positions the next tier decides.
    fn walk_tier(
        &mut self,
        order: &[usize],
        i: usize,
        pos: usize,
        direction: Direction,
        mut undecided: Bits,
        allowed: &mut Bits,
    ) -> Bits {
        let index = self.index;
        let pod = &index.pods[i];
        let n = self.members.len();
        let mut passed = Bits::empty(n);
        if pod.host_network {
            return undecided;
        }
        let namespace_labels = &index.namespaces[&pod.namespace];
        for &p in order {
            let spec = &index.admin.policies[p];
            if !spec.subject.selects(namespace_labels, &pod.labels) {
                continue;
            }
            for (r, rule) in admin_rules(spec, direction).iter().enumerate() {
                let key = (p, direction, r);
                self.ensure_admin_cached(key, rule);
                let mut matched = self.admin_peer_cache[&key].clone();
                match (&self.admin_ports_cache[&key], direction) {
                    (PortsOk::All, _) => {}
                    (PortsOk::None, _) => continue,
                    (PortsOk::Some(dests), Direction::Ingress) => {
                        if !dests.get(pos) {
                            continue;
                        }
                    }
                    (PortsOk::Some(dests), Direction::Egress) => matched.and_with(dests),
                }
                matched.and_with(&undecided);
                match rule.rule.action {
                    AdminAction::Accept => allowed.or_with(&matched),
                    AdminAction::Deny => {}
                    AdminAction::Pass => passed.or_with(&matched),
                }
                undecided.and_not(&matched);
            }
        }
        undecided.or_with(&passed);
        undecided
    }

    fn ensure_admin_cached(&mut self, key: (usize, Direction, usize), rule: &AdminRuleSpec) {
        if !self.admin_peer_cache.contains_key(&key) {
            let peers = self.admin_peer_set(rule);
            self.admin_peer_cache.insert(key, peers);
        }
        if !self.admin_ports_cache.contains_key(&key) {
            let ports = match &rule.ports {
                None => PortsOk::All,
                Some(ports) => self.ports_ok_with(|dest_ports| {
                    ports
                        .iter()
                        .any(|p| p.matches(self.port, self.protocol, dest_ports))
                }),
            };
            self.admin_ports_cache.insert(key, ports);
        }
    }

    fn admin_peer_set(&self, rule: &AdminRuleSpec) -> Bits {
        let n = self.members.len();
        let index = self.index;
        let mut set = Bits::empty(n);
        for peer in &rule.peers {
            match peer {
                AdminPeerSpec::Everything => return Bits::full(n),
                AdminPeerSpec::Nothing => {}
                AdminPeerSpec::Namespaces(_) | AdminPeerSpec::Pods { .. } | AdminPeerSpec::Networks(_) => {
                    for (namespace, positions) in self.by_namespace {
                        let namespace_labels = &index.namespaces[*namespace];
                        for &pos in positions {
                            let pod = &index.pods[self.members[pos]];
                            if peer.matches_pod(
                                namespace_labels,
                                &pod.labels,
                                pod.addrs(self.family),
                                pod.host_network,
                            ) {
                                set.set(pos);
                            }
                        }
                    }
                }
            }
        }
        set
    }

    /// The NetworkPolicy tier alone: the remote positions its rules admit, and whether any policy
    /// isolates the pod for `direction` (else the set is full).
    fn network_policy_set(&mut self, i: usize, pos: usize, direction: Direction) -> (Bits, bool) {
        let n = self.members.len();
        let index = self.index;
        let mut isolated = false;
        let mut set = Bits::empty(n);
        for p in self.selected_by(i).to_vec() {
            let Some(rules) = rules_for(&index.policies[p], direction) else {
                continue;
            };
            isolated = true;
            for (r, rule) in rules.iter().enumerate() {
                let key = (p, direction, r);
                self.ensure_cached(key, rule);
                let peers = &self.peer_cache[&key];
                match (&self.ports_cache[&key], direction) {
                    (PortsOk::None, _) => {}
                    (PortsOk::All, _) => set.or_with(peers),
                    // Ingress: the destination is this pod, so its own ports decide.
                    (PortsOk::Some(dests), Direction::Ingress) => {
                        if dests.get(pos) {
                            set.or_with(peers);
                        }
                    }
                    // Egress: the destination is the remote pod.
                    (PortsOk::Some(dests), Direction::Egress) => set.or_with_and(peers, dests),
                }
            }
        }
        if isolated {
            (set, true)
        } else {
            (Bits::full(n), false)
        }
    }

    fn selected_by(&mut self, i: usize) -> &[usize] {
        let index = self.index;
        self.selecting
            .entry(i)
            .or_insert_with(|| index.selecting(i).collect())
    }

    fn ensure_cached(&mut self, key: (usize, Direction, usize), rule: &RuleSpec) {
        if !self.peer_cache.contains_key(&key) {
            let peers = self.peer_set(rule);
            self.peer_cache.insert(key, peers);
        }
        if !self.ports_cache.contains_key(&key) {
            let ports = self.ports_ok(rule);
            self.ports_cache.insert(key, ports);
        }
    }

    fn peer_set(&self, rule: &RuleSpec) -> Bits {
        let n = self.members.len();
        let Some(peers) = &rule.peers else {
            return Bits::full(n);
        };
        let index = self.index;
        let mut set = Bits::empty(n);
        for peer in peers {
            match peer {
                PeerSpec::Pods { namespaces, pods } => {
                    for (namespace, positions) in self.by_namespace {
                        let selected = match namespaces {
                            NamespaceMatch::Own(own) => own == namespace,
                            NamespaceMatch::Selector(s) => s.matches(&index.namespaces[*namespace]),
                        };
                        if !selected {
                            continue;
                        }
                        for &pos in positions {
                            if pods.matches(&index.pods[self.members[pos]].labels) {
                                set.set(pos);
                            }
                        }
                    }
                }
                PeerSpec::IpBlock { .. } => {
                    for (pos, &i) in self.members.iter().enumerate() {
                        if index.pods[i]
                            .addrs(self.family)
                            .iter()
                            .any(|ip| peer.matches_ip(ip))
                        {
                            set.set(pos);
                        }
                    }
                }
            }
        }
        set
    }

    fn ports_ok(&self, rule: &RuleSpec) -> PortsOk {
        let Some(ports) = &rule.ports else {
            return PortsOk::All;
        };
        self.ports_ok_with(|dest_ports| {
            ports
                .iter()
                .any(|p| p.matches(self.port, self.protocol, dest_ports))
        })
    }

    /// Which destinations `admits` (given a destination's named ports) lets through; a match
    /// without any named port admits every destination.
    fn ports_ok_with(&self, admits: impl Fn(Option<&[NamedPort]>) -> bool) -> PortsOk {
        if admits(Some(&[])) {
            return PortsOk::All;
        }
        let n = self.members.len();
        let mut set = Bits::empty(n);
        let mut any = false;
        for (pos, &i) in self.members.iter().enumerate() {
            if admits(Some(self.index.pods[i].ports.as_slice())) {
                set.set(pos);
                any = true;
            }
        }
        if any { PortsOk::Some(set) } else { PortsOk::None }
    }
}
