//! The connection table of a listener: every open connection, where it stands, and which one
//! makes room for a newcomer when the table (or its client address's share) is full. Pure
//! in-memory state; the accept loop ([`super::serve`]) does the I/O and closes what is evicted.
//!
//! A connection is *protected* while it is inside an authenticated request (on the control and
//! metrics listeners every request counts as authenticated: reaching them is the authorization).
//! While the table has room every connection is admitted (a burst of callers from one pod is
//! served). Once it is full, a newcomer from an address that already holds its share
//! (`per_source`) of connections that never authenticated makes room from that address's own;
//! any other newcomer evicts, in this order:
//! 1. connections that never authenticated, taken from the client address that holds the most of
//!    them (so a flood from one address evicts its own connections, not another caller's), the most
//!    stuck first: the one whose last step forward (accepted, TLS done, request begun or ended) is
//!    oldest;
//! 2. connections that authenticated before and are idle now (keep-alive), the most stuck first.
//!
//! On a plain-HTTP listener a connection that sent bytes goes before one that sent none within
//! each tier: an unread connection's request may be on its way whole, while one that sent part of
//! a head is slow. On TLS every client speaks first, so there the step forward decides alone.
//! When nothing can be evicted the newcomer is refused.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

/// A listener's table: at most `max` connections; once full, an address holding `per_source`
/// connections that never authenticated makes room only from its own.
pub struct Table {
    max: usize,
    per_source: usize,
    spare_silent: bool,
    epoch: Instant,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    open: BTreeMap<u64, Arc<Entry>>,
}

/// One open connection.
pub struct Entry {
    source: IpAddr,
    /// Requests of this connection being answered.
    requests: AtomicUsize,
    /// Of those, the authenticated ones: while above zero the connection is never evicted.
    protected: AtomicUsize,
    /// A request of this connection authenticated (it stays so for the connection's life).
    authenticated: AtomicBool,
    /// The client has sent bytes.
    sent_bytes: AtomicBool,
    /// When the connection last stepped forward, in ms since the table's epoch.
    progress_ms: AtomicU64,
    /// Notified to close the connection.
    pub(super) evict: Notify,
}

impl Entry {
    fn evictable(&self) -> bool {
        self.protected.load(Ordering::Acquire) == 0
    }

    fn authenticated(&self) -> bool {
        self.authenticated.load(Ordering::Acquire)
    }

    /// Marks that the client sent bytes.
    pub fn sent_bytes(&self) {
        if !self.sent_bytes.load(Ordering::Relaxed) {
            self.sent_bytes.store(true, Ordering::Release);
        }
    }

    /// The client address.
    pub fn source(&self) -> IpAddr {
        self.source
    }
}

/// Why a newcomer was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every connection is inside an authenticated request.
    Full,
}

impl Table {
    /// `spare_silent`: evict connections that sent bytes before silent ones (plain HTTP).
    pub fn new(max: usize, per_source: usize, spare_silent: bool) -> Self {
        Table {
            max: max.max(1),
            per_source: per_source.max(1),
            spare_silent,
            epoch: Instant::now(),
            inner: Mutex::default(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Open connections now.
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |inner| inner.open.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the table is full.
    pub fn full(&self) -> bool {
        self.len() >= self.max
    }

    /// A slot for a new connection from `source`, evicting (notifying) a connection when the
    /// table is full; refused when nothing may be evicted.
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Result<Slot, Refusal> {
        let now = self.now_ms();
        let mut inner = self.inner.lock().map_err(|_| Refusal::Full)?;
        if inner.open.len() >= self.max {
            let own = inner
                .open
                .values()
                .filter(|e| e.source == source && !e.authenticated() && e.evictable())
                .count();
            let only = (own >= self.per_source).then_some(source);
            let victim = self.victim(&inner, now, only);
            self.evict(&mut inner, victim.ok_or(Refusal::Full)?);
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let entry = Arc::new(Entry {
            source,
            requests: AtomicUsize::new(0),
            protected: AtomicUsize::new(0),
            authenticated: AtomicBool::new(false),
            sent_bytes: AtomicBool::new(false),
            progress_ms: AtomicU64::new(now),
            evict: Notify::new(),
        });
        inner.open.insert(id, entry.clone());
        Ok(Slot {
            table: self.clone(),
            id,
            entry,
        })
    }

    fn evict(&self, inner: &mut Inner, id: u64) {
        if let Some(evicted) = inner.open.remove(&id) {
            evicted.evict.notify_one();
        }
    }

    /// The connection to evict, of `only` this address when given (its unauthenticated ones).
    fn victim(&self, inner: &Inner, now: u64, only: Option<IpAddr>) -> Option<u64> {
        let mut unauthenticated: HashMap<IpAddr, usize> = HashMap::new();
        for entry in inner.open.values() {
            if !entry.authenticated() && entry.evictable() {
                *unauthenticated.entry(entry.source).or_default() += 1;
            }
        }
        inner
            .open
            .iter()
            .filter(|(_, e)| e.evictable())
            .filter(|(_, e)| only.is_none_or(|source| e.source == source && !e.authenticated()))
            .max_by_key(|(id, e)| {
                let never = !e.authenticated();
                let crowd = if never {
                    unauthenticated.get(&e.source).copied().unwrap_or(0)
                } else {
                    0
                };
                let talking = !self.spare_silent || e.sent_bytes.load(Ordering::Acquire);
                let stuck = now.saturating_sub(e.progress_ms.load(Ordering::Acquire));
                // Oldest first among equals.
                (never, crowd, talking, stuck, std::cmp::Reverse(**id))
            })
            .map(|(id, _)| *id)
    }

    fn step(&self, entry: &Entry) {
        entry.progress_ms.store(self.now_ms(), Ordering::Release);
    }
}

/// A connection's place in the [`Table`], given back when the connection ends.
pub struct Slot {
    table: Arc<Table>,
    id: u64,
    pub(super) entry: Arc<Entry>,
}

impl Slot {
    /// The connection stepped forward (e.g. its TLS handshake ended).
    pub fn step(&self) {
        self.table.step(&self.entry);
    }

    /// A handle the connection's requests use.
    pub fn handle(&self) -> Handle {
        Handle {
            table: self.table.clone(),
            entry: self.entry.clone(),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.table.inner.lock() {
            inner.open.remove(&self.id);
        }
    }
}

/// What a request knows of its connection: it marks the request's start and end, and its
/// authentication.
#[derive(Clone)]
pub struct Handle {
    table: Arc<Table>,
    entry: Arc<Entry>,
}

impl Handle {
    /// Marks a request of this connection as being answered until the guard drops;
    /// `authenticated` when reaching the listener is the authorization.
    pub fn request(&self, authenticated: bool) -> RequestGuard {
        self.table.step(&self.entry);
        self.entry.requests.fetch_add(1, Ordering::AcqRel);
        let protection = authenticated.then(|| self.protect());
        RequestGuard {
            handle: self.clone(),
            _protection: protection,
        }
    }

    /// Marks the connection's current request as authenticated: never evicted until the guard
    /// drops, and ranked after unauthenticated connections for good.
    pub fn protect(&self) -> Protection {
        self.entry.authenticated.store(true, Ordering::Release);
        self.entry.protected.fetch_add(1, Ordering::AcqRel);
        Protection(self.entry.clone())
    }

    /// Marks that the client sent bytes.
    pub fn sent_bytes(&self) {
        self.entry.sent_bytes();
    }

    /// The client address.
    pub fn source(&self) -> IpAddr {
        self.entry.source
    }
}

/// A request being answered; see [`Handle::request`].
pub struct RequestGuard {
    handle: Handle,
    _protection: Option<Protection>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.handle.entry.requests.fetch_sub(1, Ordering::AcqRel);
        self.handle.table.step(&self.handle.entry);
    }
}

/// An authenticated request's protection from eviction; see [`Handle::protect`].
pub struct Protection(Arc<Entry>);

impl Drop for Protection {
    fn drop(&mut self) {
        self.0.protected.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    fn open_ids(table: &Table) -> Vec<u64> {
        table.inner.lock().unwrap().open.keys().copied().collect()
    }

    fn evicted(slot: &Slot) -> bool {
        slot.entry.evict.notified().now_or_never().is_some()
    }

    #[test]
    fn a_full_table_evicts_its_oldest_idle_connection_and_never_a_busy_one() {
        let table = Arc::new(Table::new(2, 2, true));
        let first = table.admit(ip(1)).unwrap();
        let second = table.admit(ip(1)).unwrap();
        let busy = first.handle().request(true);
        let third = table.admit(ip(1)).expect("the idle second connection makes room");
        assert_eq!(open_ids(&table), vec![first.id, third.id]);
        assert!(evicted(&second), "second was told to close");
        let _busy_too = third.handle().request(true);
        assert_eq!(
            table.admit(ip(1)).err(),
            Some(Refusal::Full),
            "every connection is inside a request"
        );
        drop(busy);
        assert!(table.admit(ip(1)).is_ok());
    }

    #[test]
    fn on_plain_http_a_connection_that_sent_bytes_goes_before_an_older_silent_one() {
        let table = Arc::new(Table::new(2, 2, true));
        let unread = table.admit(ip(1)).unwrap();
        let read = table.admit(ip(1)).unwrap();
        read.entry.sent_bytes();
        let newest = table.admit(ip(1)).unwrap();
        assert_eq!(open_ids(&table), vec![unread.id, newest.id]);
    }

    #[test]
    fn an_unauthenticated_request_is_evicted_and_an_authenticated_one_never() {
        let table = Arc::new(Table::new(2, 2, false));
        let authenticated = table.admit(ip(1)).unwrap();
        let anonymous = table.admit(ip(2)).unwrap();
        let handle = authenticated.handle();
        let _request = handle.request(false);
        let _protected = handle.protect();
        let _waiting = anonymous.handle().request(false);
        let newcomer = table
            .admit(ip(3))
            .expect("the unauthenticated request makes room");
        assert!(evicted(&anonymous));
        assert_eq!(open_ids(&table), vec![authenticated.id, newcomer.id]);
    }

    #[test]
    fn a_connection_that_authenticated_before_outlives_every_one_that_never_did() {
        let table = Arc::new(Table::new(3, 3, false));
        let keep_alive = table.admit(ip(1)).unwrap();
        drop(keep_alive.handle().request(true));
        let _a = table.admit(ip(2)).unwrap();
        let _b = table.admit(ip(3)).unwrap();
        let _c = table.admit(ip(4)).unwrap();
        let _d = table.admit(ip(5)).unwrap();
        assert!(
            open_ids(&table).contains(&keep_alive.id),
            "{:?}",
            open_ids(&table)
        );
        assert!(!evicted(&keep_alive));
    }

    #[test]
    fn a_flood_from_one_address_evicts_its_own_connections_and_not_another_callers() {
        let table = Arc::new(Table::new(8, 4, false));
        let caller = table.admit(ip(9)).unwrap();
        let flood: Vec<Slot> = (0..100).map(|_| table.admit(ip(1)).unwrap()).collect();
        assert!(!evicted(&caller), "the lone caller keeps its connection");
        assert!(open_ids(&table).contains(&caller.id));
        let live = flood.iter().filter(|s| !evicted(s)).count();
        assert_eq!(live, 7, "the flood fills the room there is, no more");
        assert_eq!(table.len(), 8);
    }

    #[test]
    fn while_the_table_has_room_one_address_may_hold_more_than_its_share() {
        let table = Arc::new(Table::new(8, 2, false));
        let burst: Vec<Slot> = (0..8).map(|_| table.admit(ip(1)).unwrap()).collect();
        assert!(
            burst.iter().all(|s| !evicted(s)),
            "a burst of callers from one pod is admitted"
        );
        let other = table.admit(ip(2)).expect("room made from the crowd");
        assert!(evicted(&burst[0]));
        let second = table.admit(ip(2)).unwrap();
        let third = table.admit(ip(2)).unwrap();
        assert!(evicted(&other), "an address at its share makes room from its own");
        assert!(!evicted(&second) && !evicted(&third));
    }

    #[test]
    fn a_full_table_takes_room_from_the_address_holding_the_most() {
        let table = Arc::new(Table::new(6, 6, false));
        let lone = table.admit(ip(9)).unwrap();
        let crowd: Vec<Slot> = (0..5).map(|_| table.admit(ip(1)).unwrap()).collect();
        let newcomer = table.admit(ip(7)).unwrap();
        assert!(
            !evicted(&lone),
            "the oldest connection, alone from its address, stays"
        );
        assert!(evicted(&crowd[0]), "the crowd's oldest made room");
        assert!(open_ids(&table).contains(&newcomer.id));
    }

    #[test]
    fn an_address_at_its_share_with_every_connection_authenticated_is_refused_only_when_full() {
        let table = Arc::new(Table::new(3, 1, false));
        let first = table.admit(ip(1)).unwrap();
        let _in_request = first.handle().request(true);
        let second = table
            .admit(ip(1))
            .expect("authenticated connections do not count");
        let _also = second.handle().request(true);
        let third = table.admit(ip(1)).unwrap();
        let _too = third.handle().request(true);
        assert_eq!(table.admit(ip(1)).err(), Some(Refusal::Full));
    }
}
