//! Named instants in a POP3 session where a test server (the fake server, or the proxy in front
//! of Dovecot) stops and tells the test, which then kills popbridge there: the moments the
//! durability rule is about (DESIGN §4), hit on purpose instead of hoped for.
//!
//! A [`Trap`] is armed for one [`Point`]; the first session that reaches it marks it hit, wakes
//! the test and blocks until the test releases it (after its SIGKILL). Counts (the Nth RETR, the
//! Nth DELE) are per session, 1-based.
#![allow(dead_code)]

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Point {
    /// The Nth RETR answer is half sent (its status line and part of the body).
    MidRetr(u32),
    /// The Nth RETR answer was sent completely; nothing more is sent.
    AfterRetr(u32),
    /// The Nth DELE command arrived; not answered (nor applied: that needs QUIT).
    OnDele(u32),
    /// The Nth DELE was answered; later answers are held (between DELE batches).
    AfterDele(u32),
    /// QUIT arrived after login; nothing is deleted yet, nothing answered.
    OnQuit,
    /// QUIT arrived and the server applied the deletions (RFC 1939 UPDATE state), but its
    /// answer is never sent: the client cannot know that they happened.
    QuitApplied,
}

impl Point {
    /// The point's name without its count, for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Point::MidRetr(_) => "mid-RETR",
            Point::AfterRetr(_) => "after-RETR",
            Point::OnDele(_) => "on-DELE",
            Point::AfterDele(_) => "after-DELE",
            Point::OnQuit => "on-QUIT",
            Point::QuitApplied => "QUIT-applied",
        }
    }

    /// Every kind, for "was each one hit" checks.
    pub const KINDS: [&'static str; 6] = ["mid-RETR", "after-RETR", "on-DELE", "after-DELE", "on-QUIT", "QUIT-applied"];
}

#[derive(Default)]
struct State {
    armed: Option<Point>,
    hit: Option<Point>,
    /// What the session said about the instant (e.g. the UIDL a DELE names).
    detail: Option<String>,
    released: bool,
}

/// One trap, shared by the test and a server's sessions.
#[derive(Clone, Default)]
pub struct Trap(Arc<(Mutex<State>, Condvar)>);

impl Trap {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Arms the trap for `p` (for sessions from now on); forgets an earlier hit.
    pub fn arm(&self, p: Point) {
        *self.lock() = State { armed: Some(p), ..State::default() };
    }

    /// Disarms it (and releases a session held at it).
    pub fn disarm(&self) {
        let mut s = self.lock();
        s.armed = None;
        s.released = true;
        self.0.1.notify_all();
    }

    /// Whether a session reaching `p` now would be held (to shape what it sends first).
    pub fn is_armed_for(&self, p: Point) -> bool {
        let s = self.lock();
        s.armed == Some(p) && s.hit.is_none()
    }

    /// Server side: the session is at `p`. If the trap is armed for it and not yet hit, marks it
    /// hit, wakes the test, and blocks until released (or `give_up` says the server is stopping).
    pub fn reached(&self, p: Point, detail: impl FnOnce() -> String, give_up: impl Fn() -> bool) {
        let mut s = self.lock();
        if s.armed != Some(p) || s.hit.is_some() {
            return;
        }
        s.hit = Some(p);
        s.detail = Some(detail());
        self.0.1.notify_all();
        while !s.released && !give_up() {
            s = self.0.1.wait_timeout(s, Duration::from_millis(50)).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Test side: waits until a session is held at the armed point (true), or `done()` says it
    /// can no longer happen (false, e.g. popbridge exited), or `timeout` passes (false).
    pub fn wait_hit(&self, timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
        let t = Instant::now();
        let mut s = self.lock();
        loop {
            if s.hit.is_some() {
                return true;
            }
            if t.elapsed() > timeout {
                return false;
            }
            drop(s);
            if done() {
                // one more look: the hit may have come just before the exit
                return self.lock().hit.is_some();
            }
            s = self.lock();
            s = self.0.1.wait_timeout(s, Duration::from_millis(10)).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// What the session reported at the point it was held at.
    pub fn detail(&self) -> Option<String> {
        self.lock().detail.clone()
    }

    /// Lets the held session go on (popbridge is dead by then: it finds the connection closed).
    pub fn release(&self) {
        let mut s = self.lock();
        s.released = true;
        s.armed = None;
        self.0.1.notify_all();
    }
}
