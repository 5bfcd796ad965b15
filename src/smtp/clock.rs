//! The outbound queue's notion of "now", and its way of waiting for a due time.
//!
//! In the daemon it is the system clock. A test hands the queue a [`ManualClock`] instead and moves
//! time itself: the real retry schedule and the three-day give-up then run in milliseconds, and
//! the test can see what the queue is waiting for ([`Nap`]) instead of guessing with sleeps.
//! Times are unix seconds, as the outbox stores them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// The longest the system clock sleeps in one go, even when the next attempt is due later.
/// tokio's timers run on the monotonic clock, which stops while a laptop is suspended; the outbox's
/// due times are wall-clock times. Waking up at least hourly bounds how late a retry can be after
/// a resume.
pub const MAX_NAP: Duration = Duration::from_secs(3600);

/// Where the queue's time comes from.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// Wall-clock time (`SystemTime`), tokio timers for waiting.
    #[default]
    System,
    /// Time that only moves when a test says so.
    Manual(ManualClock),
}

impl Clock {
    /// Now, in unix seconds.
    pub fn now(&self) -> i64 {
        match self {
            Clock::System => crate::store::now(),
            Clock::Manual(m) => m.now(),
        }
    }

    /// Returns once `deadline` has come (at once if it has), or — for the system clock — after
    /// [`MAX_NAP`] at most; `None`: there is nothing to wait for (only a kick or shutdown wakes the
    /// caller, or the system clock's nap ending). The caller re-checks what is due either way.
    pub async fn sleep_until(&self, deadline: Option<i64>) {
        match self {
            Clock::System => {
                let wait = match deadline {
                    Some(t) => Duration::from_secs(u64::try_from(t - crate::store::now()).unwrap_or(0)).min(MAX_NAP),
                    None => MAX_NAP,
                };
                tokio::time::sleep(wait).await
            }
            Clock::Manual(m) => m.sleep_until(deadline).await,
        }
    }
}

/// What the (one) sleeper on a [`ManualClock`] is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nap {
    /// How many naps have begun so far (a new one after every wake-up).
    pub count: u64,
    /// Whether the sleeper is waiting right now.
    pub asleep: bool,
    /// The time it waits for (`None`: nothing is due; only a kick wakes it).
    pub until: Option<i64>,
}

#[derive(Debug)]
struct State {
    now: i64,
    nap: Nap,
}

/// A clock for tests: `now` stays put until [`set`](ManualClock::set) or
/// [`advance`](ManualClock::advance) moves it, and a sleeper wakes when it reaches its deadline.
/// Cloning shares the clock.
#[derive(Clone, Debug)]
pub struct ManualClock {
    state: Arc<watch::Sender<State>>,
}

impl ManualClock {
    pub fn new(now: i64) -> ManualClock {
        let (tx, _) = watch::channel(State { now, nap: Nap { count: 0, asleep: false, until: None } });
        ManualClock { state: Arc::new(tx) }
    }

    pub fn now(&self) -> i64 {
        self.state.borrow().now
    }

    /// Moves the clock to `t`. Time never goes backwards: an earlier `t` is a bug in the test.
    pub fn set(&self, t: i64) {
        self.state.send_modify(|s| {
            assert!(t >= s.now, "ManualClock: time cannot go back from {} to {t}", s.now);
            s.now = t;
        });
    }

    pub fn advance(&self, secs: i64) {
        let t = self.now() + secs;
        self.set(t);
    }

    /// The sleeper's state now.
    pub fn nap(&self) -> Nap {
        self.state.borrow().nap
    }

    /// Waits (up to `timeout` of real time) until the sleeper is asleep in a nap that began after
    /// nap number `after` and `want` holds for it; returns that nap, or the last one seen.
    pub async fn wait_for_nap(&self, after: u64, timeout: Duration, want: impl Fn(&Nap) -> bool) -> Result<Nap, Nap> {
        let mut rx = self.state.subscribe();
        let found =
            tokio::time::timeout(timeout, rx.wait_for(|s| s.nap.asleep && s.nap.count > after && want(&s.nap))).await;
        match found {
            Ok(Ok(s)) => Ok(s.nap),
            _ => Err(self.nap()),
        }
    }

    async fn sleep_until(&self, deadline: Option<i64>) {
        self.state.send_modify(|s| s.nap = Nap { count: s.nap.count + 1, asleep: true, until: deadline });
        // Dropped when the nap ends, woken or not (the queue's select! drops it on a kick).
        struct Awake<'a>(&'a watch::Sender<State>);
        impl Drop for Awake<'_> {
            fn drop(&mut self) {
                self.0.send_modify(|s| s.nap.asleep = false);
            }
        }
        let _awake = Awake(&self.state);
        let mut rx = self.state.subscribe();
        match deadline {
            Some(t) => {
                let _ = rx.wait_for(|s| s.now >= t).await;
            }
            None => std::future::pending::<()>().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_sleeper_wakes_at_its_deadline_and_not_before() {
        let clock = ManualClock::new(1000);
        let c = Clock::Manual(clock.clone());
        let sleeper = tokio::spawn(async move { c.sleep_until(Some(1060)).await });
        let nap = clock.wait_for_nap(0, Duration::from_secs(5), |_| true).await.unwrap();
        assert_eq!((nap.count, nap.until), (1, Some(1060)));
        clock.advance(59);
        tokio::task::yield_now().await;
        assert!(clock.nap().asleep && !sleeper.is_finished(), "one second early: still asleep");
        clock.advance(1);
        tokio::time::timeout(Duration::from_secs(5), sleeper).await.unwrap().unwrap();
        assert!(!clock.nap().asleep);
        // A past deadline returns at once.
        Clock::Manual(clock.clone()).sleep_until(Some(1000)).await;
        assert_eq!(clock.nap().count, 2);
    }
}
