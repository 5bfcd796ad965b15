//! The login throttle of the local listeners: one instance serves IMAP and SMTP submission alike
//! (a password guessed over SMTP is the same local password as over IMAP).
//!
//! A wrong password is answered after a delay, the longest of three, one per key:
//! - its **source address** (the rule popbridge always had): 0 s for the first failure, then 1, 2,
//!   4, 8, 16 s; forgotten after 15 minutes without failures, or at a success from that address;
//! - its **login name** (`me`, `me+Work` and `me@Work` are one name: they test one password): the
//!   same steps, so that rotating through 127.x.y.z buys a guesser nothing;
//! - **everyone together**: [`GLOBAL_FREE`] failures go without delay, the next ones wait 1, 2, 4,
//!   8, then 16 s; the count drains by one every [`GLOBAL_DRAIN`], so a guesser who rotates names
//!   and addresses is slowed down too, and a burst of failures by the owner's own clients (a
//!   changed password) costs nothing once it is over.
//!
//! The right password is never delayed nor refused. What bounds guessing is that the connection
//! serves the delay *holding its place* (`net::listener`: a connection whose login is being
//! checked is never pushed out), whether its client waits for the answer or hangs up: so the
//! wrong guesses any number of clients get answered are bounded by the places for connections
//! that have not logged in, divided by the delay — about 3 a second with the default limits.
//! (A client that gives up early learns that its guess was wrong a little sooner, but frees no
//! place any sooner.)

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest a wrong password waits: the last step of every key. Long enough that guessing is
/// slow (one answer per 16 s per place before login), short enough that a client of the owner who
/// mistyped does not give up meanwhile (Thunderbird waits 100 s for an answer).
pub const MAX_DELAY: Duration = Duration::from_secs(16);
/// An address's or a name's count is forgotten after this long without failures (as before).
pub const FORGET: Duration = Duration::from_secs(15 * 60);
/// Recent failures, from anyone, that wait for nothing but their own keys. Several mail clients
/// with a stale password, each opening its connections at once, stay below it.
pub const GLOBAL_FREE: u32 = 16;
/// The global count drains by one this often: six failures a minute, from anywhere, never slow
/// anybody down; a steady guesser above that rate is held at [`MAX_DELAY`].
pub const GLOBAL_DRAIN: Duration = Duration::from_secs(10);
/// Addresses and names remembered at most (the oldest is dropped beyond): a bound on memory
/// whatever a client sends. At the throttled rate, 15 minutes bring far fewer.
pub const MAX_TRACKED: usize = 4096;
/// A login name is remembered by at most this many bytes.
const MAX_NAME: usize = 64;

/// 0 s for the first failure, then 1, 2, 4, 8, 16 s (`n` = failures counted before this one).
fn step(n: u32) -> Duration {
    match n {
        0 => Duration::ZERO,
        n => Duration::from_secs(1u64 << (n - 1).min(4)).min(MAX_DELAY),
    }
}

/// The global key's count beyond which the delay no longer grows: it is kept there, so that once a
/// flood stops, the delay is back to zero within a minute rather than hours.
const GLOBAL_CAP: f64 = (GLOBAL_FREE + 5) as f64;

#[derive(Clone, Copy)]
struct Count {
    n: u32,
    last: Instant,
}

/// Counts per key, forgotten after [`FORGET`] without failures, at most [`MAX_TRACKED`] keys.
struct Counts<K>(HashMap<K, Count>);

impl<K: Hash + Eq + Clone> Counts<K> {
    /// Counts a failure for `key`; returns how many were counted before it.
    fn count(&mut self, key: &K, now: Instant) -> u32 {
        self.0.retain(|_, c| now.duration_since(c.last) < FORGET);
        if !self.0.contains_key(key)
            && self.0.len() >= MAX_TRACKED
            && let Some(oldest) = self.0.iter().min_by_key(|(_, c)| c.last).map(|(k, _)| k.clone())
        {
            self.0.remove(&oldest);
        }
        let c = self.0.entry(key.clone()).or_insert(Count { n: 0, last: now });
        let before = c.n;
        // Saturates well past the last step: a count only ever selects a delay.
        c.n = c.n.saturating_add(1).min(64);
        c.last = now;
        before
    }

    fn forget(&mut self, key: &K) {
        self.0.remove(key);
    }
}

/// Everyone's failures: a level that drains continuously.
struct Global {
    level: f64,
    at: Instant,
}

impl Global {
    fn drained(&mut self, now: Instant) -> f64 {
        let gone = now.duration_since(self.at).as_secs_f64() / GLOBAL_DRAIN.as_secs_f64();
        self.level = (self.level - gone).max(0.0);
        self.at = now;
        self.level
    }
}

struct Inner {
    addresses: Counts<IpAddr>,
    names: Counts<String>,
    global: Global,
}

pub struct Throttle(Mutex<Inner>);

impl Default for Throttle {
    fn default() -> Throttle {
        Throttle(Mutex::new(Inner {
            addresses: Counts(HashMap::new()),
            names: Counts(HashMap::new()),
            global: Global { level: 0.0, at: Instant::now() },
        }))
    }
}

/// The key a login name is counted under: every login of the local user (`me`, `me+Work`,
/// `me@Work`) tests the same password, so they are one name; anything else is its own name, cut to
/// a bounded length.
pub fn login_name(user: &[u8], local: &str) -> String {
    if let Some(rest) = user.strip_prefix(local.as_bytes())
        && (rest.is_empty() || rest.starts_with(b"+") || rest.starts_with(b"@"))
    {
        return local.to_string();
    }
    bounded(user)
}

/// At most [`MAX_NAME`] bytes of a name, as text.
fn bounded(name: &[u8]) -> String {
    let mut name = String::from_utf8_lossy(&name[..name.len().min(MAX_NAME)]).into_owned();
    while name.len() > MAX_NAME {
        name.pop();
    }
    name
}

impl Throttle {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a wrong password from `ip` for the login name `name` (see [`login_name`]) and says
    /// how long to wait — holding the connection's place — before answering it.
    pub fn failed(&self, ip: IpAddr, name: &str) -> Duration {
        let name = bounded(name.as_bytes());
        let now = Instant::now();
        let mut m = self.lock();
        let by_address = step(m.addresses.count(&ip, now));
        let by_name = step(m.names.count(&name, now));
        let level = m.global.drained(now);
        // A failure partly drained still counts (so a burst is not let through by microseconds).
        let by_all = match level.ceil() as u32 {
            n if n < GLOBAL_FREE => Duration::ZERO,
            n => step(n - GLOBAL_FREE + 1),
        };
        m.global.level = (level + 1.0).min(GLOBAL_CAP);
        by_address.max(by_name).max(by_all)
    }

    /// The right password from `ip` for `name`: the address and the name start afresh (as a
    /// success always did for the address). Everyone's count is left to drain.
    pub fn succeeded(&self, ip: IpAddr, name: &str) {
        let name = bounded(name.as_bytes());
        let mut m = self.lock();
        m.addresses.forget(&ip);
        m.names.forget(&name);
    }

    /// Forgets every count, as a restart would (for test harnesses that must not wait).
    pub fn forget(&self) {
        let mut m = self.lock();
        m.addresses.0.clear();
        m.names.0.clear();
        m.global.level = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x7f00_0000 + n))
    }

    #[test]
    fn one_address_waits_0_1_2_4_8_16_and_a_success_starts_it_afresh() {
        let t = Throttle::default();
        let d: Vec<u64> = (0..7).map(|_| t.failed(ip(1), "me").as_secs()).collect();
        assert_eq!(d, [0, 1, 2, 4, 8, 16, 16]);
        t.succeeded(ip(1), "me");
        assert_eq!(t.failed(ip(1), "me").as_secs(), 0);
    }

    #[test]
    fn one_name_from_rotating_addresses_waits_as_one_address_did() {
        let t = Throttle::default();
        let d: Vec<u64> = (0..6).map(|i| t.failed(ip(100 + i), "me").as_secs()).collect();
        assert_eq!(d, [0, 1, 2, 4, 8, 16]);
        // me+Work and me@Work test the same password: the same name.
        assert_eq!(login_name(b"me+Work", "me"), "me");
        assert_eq!(login_name(b"me@Work", "me"), "me");
        assert_eq!(login_name(b"meWork", "me"), "meWork");
        assert_eq!(t.failed(ip(200), &login_name(b"me+Work", "me")).as_secs(), 16);
    }

    #[test]
    fn rotating_names_and_addresses_are_slowed_down_by_the_global_key() {
        let t = Throttle::default();
        let d: Vec<u64> = (0..GLOBAL_FREE + 6).map(|i| t.failed(ip(1000 + i), &format!("user{i}")).as_secs()).collect();
        let free = vec![0; GLOBAL_FREE as usize];
        assert_eq!(d[..GLOBAL_FREE as usize], free[..]);
        assert_eq!(d[GLOBAL_FREE as usize..], [1, 2, 4, 8, 16, 16]);
    }

    #[test]
    fn no_delay_exceeds_the_longest_step() {
        let t = Throttle::default();
        let worst = (0..500).map(|i| t.failed(ip(i), if i % 2 == 0 { "me" } else { "x" })).max();
        assert_eq!(worst, Some(MAX_DELAY));
    }

    #[test]
    fn the_global_count_drains_and_is_capped() {
        let t = Throttle::default();
        for i in 0..1000 {
            let _ = t.failed(ip(i), &format!("n{i}"));
        }
        let mut m = t.lock();
        assert!(m.global.level <= GLOBAL_CAP);
        // A minute later the flood is forgotten: 21 - 6 = 15 < GLOBAL_FREE.
        m.global.at -= Duration::from_secs(60);
        let level = m.global.drained(Instant::now());
        assert!(level < GLOBAL_FREE as f64, "{level}");
    }

    #[test]
    fn memory_is_bounded_whatever_the_names() {
        let t = Throttle::default();
        for i in 0..(MAX_TRACKED as u32 + 100) {
            let _ = t.failed(ip(i), &format!("{i:0>80}"));
        }
        let m = t.lock();
        assert!(m.names.0.len() <= MAX_TRACKED && m.addresses.0.len() <= MAX_TRACKED);
        assert!(m.names.0.keys().all(|k| k.len() <= MAX_NAME));
    }
}
