//! The pipelining window (issue 19): how much the fetcher asks the server for before the answers
//! come back. Over a remote link the answers to one window arrive a round trip after it was sent,
//! so a fixed window caps the throughput at window ÷ RTT (32 messages of ~34 KB at 50 ms: about
//! 20 MB/s, while the server and TLS deliver 70+). The window here follows the bandwidth-delay
//! product instead, never less than [`INITIAL_BYTES`], never more than [`MAX_BYTES`] and
//! [`MAX_COMMANDS`]:
//!
//! - **Slow start**, as TCP's: each answer lets its own size more into flight, so the window
//!   doubles every round trip — while each round's rate (bytes answered over at least one
//!   smallest RTT) still grows by [`SLOW_START_GROWTH`] over the best before it.
//! - Then the window is [`GAIN`] × the best rate × the smallest RTT (what slow start added
//!   beyond that would only queue at the server), and it keeps following that product as the
//!   rate improves: the rate grows while the pipe is what limits (a window W delivers W ÷ RTT,
//!   so 2 × W may follow), and stops growing when something else does (the server, TLS, the
//!   store writer) — room for the rate to vary without the socket going idle, and no more.
//!
//! The rate is the best of any round (a max filter), so a slow round — the store writer pausing
//! for a commit — never shrinks the window. The round trip is measured by the driver
//! ([`Pop3Conn::min_rtt`]: a command written on an idle connection → its answer's first byte),
//! from the login on; a loopback or LAN server (RTT well under a millisecond) keeps the initial
//! window.
//!
//! What is in flight costs popbridge no memory: the answers are the server's, or the network's,
//! until they are read; what has been read waits for the store writer within
//! [`super::SINK_BUDGET`], and while that is spent the fetcher stops reading and TCP's flow control
//! stops the server (the kernel's receive buffer, autotuned, holds the rest). [`MAX_BYTES`] bounds
//! what the server is asked to queue, [`MAX_COMMANDS`] what the server must accept unanswered.
//!
//! Without RFC 2449 PIPELINING the window is one command: lock step, as before.
//!
//! Every command is counted at its expected answer size: a RETR at the size LIST announced, a
//! DELE or a `TOP n 0` at [`SMALL_ANSWER`] (their answers are tiny, but each costs the server a
//! command to parse and one line to queue). The window is pure bookkeeping: the fetcher tells it
//! what was sent and answered, with the time, and asks whether there is room (so it is tested
//! without a network, on made-up clocks).

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::net::pop3::Pop3Conn;
use crate::pop3::{Command, Reply};

/// Bytes in flight at the start, before anything is measured: the old fixed byte bound (about
/// 120 average messages), which loopback and LAN servers never need more than (their RTT is well
/// under a millisecond) and which fills the first round trip of a remote one.
pub const INITIAL_BYTES: u64 = 4 * 1024 * 1024;
/// The most bytes of answers in flight: twice the bandwidth-delay product of 80 MB/s at 200 ms
/// (what the harness's Dovecot, TLS and delay proxy deliver on this machine, at its longest
/// delay), and a bound on what one session asks a server to queue.
pub const MAX_BYTES: u64 = 32 * 1024 * 1024;
/// The most commands in flight: enough for 32 MiB of 16 KB messages; their command lines
/// (`RETR 12345\r\n`) are 24 KB, less than any socket buffer, and the driver reads while it
/// writes, so a server that answers while it reads never stalls on them.
pub const MAX_COMMANDS: usize = 2048;
/// What a command with a small answer (DELE, `TOP n 0`, NOOP) counts for in the window.
pub const SMALL_ANSWER: u64 = 4 * 1024;
/// Headroom over the measured bandwidth-delay product.
pub const GAIN: u64 = 2;
/// Slow start goes on while each round's rate is at least this much of the best before it
/// (doubling the window should double it; a quarter more is growth beyond noise).
pub const SLOW_START_GROWTH: f64 = 1.25;
/// A round (one rate sample) lasts at least one smallest RTT and at least this long, so the rate
/// of a loopback server (RTT of microseconds) is measured over more than one answer.
pub const MIN_ROUND: Duration = Duration::from_millis(5);

/// The window of one session. See the module docs.
#[derive(Debug, Clone)]
pub struct Window {
    /// Bytes allowed in flight now.
    limit: u64,
    initial: u64,
    max_bytes: u64,
    /// Growing by each answer's size (doubling per round trip) until a round's rate grows by
    /// less than [`SLOW_START_GROWTH`].
    slow_start: bool,
    max_commands: usize,
    /// In flight now: counted bytes and commands.
    bytes: u64,
    commands: usize,
    /// Smallest round trip seen (command sent on an idle connection → first byte of its answer).
    min_rtt: Option<Duration>,
    /// The best rate of a round, in counted bytes per second.
    best_rate: f64,
    /// The round being measured: when it started and the bytes answered before it.
    round: Option<(Instant, u64)>,
    /// Counted bytes of every answer so far.
    answered: u64,
}

impl Window {
    /// A session's window: [`INITIAL_BYTES`] growing to [`MAX_BYTES`] and [`MAX_COMMANDS`] when the
    /// server pipelines (RFC 2449 PIPELINING), else one command at a time.
    pub fn new(pipelining: bool) -> Window {
        if pipelining {
            Window::with_bounds(INITIAL_BYTES, MAX_BYTES, MAX_COMMANDS)
        } else {
            Window::with_bounds(u64::MAX, u64::MAX, 1)
        }
    }

    /// A window from `initial` to `max_bytes` bytes, at most `max_commands` commands.
    pub fn with_bounds(initial: u64, max_bytes: u64, max_commands: usize) -> Window {
        Window {
            limit: initial.min(max_bytes),
            initial: initial.min(max_bytes),
            max_bytes,
            slow_start: max_commands > 1,
            max_commands: max_commands.max(1),
            bytes: 0,
            commands: 0,
            min_rtt: None,
            best_rate: 0.0,
            round: None,
            answered: 0,
        }
    }

    /// Whether a command whose answer counts `cost` bytes may be sent now. With nothing in flight
    /// there is always room (a message larger than the window goes alone).
    pub fn room(&self, cost: u64) -> bool {
        self.commands == 0 || (self.commands < self.max_commands && self.bytes.saturating_add(cost) <= self.limit)
    }

    /// A command was sent (queued for the socket).
    pub fn sent(&mut self, cost: u64) {
        self.bytes = self.bytes.saturating_add(cost);
        self.commands += 1;
    }

    /// The answer to the oldest command in flight, which counted `cost`, was read completely at
    /// `now`. Ends a round once it lasted a round trip, and grows the window from its rate.
    pub fn answered(&mut self, cost: u64, now: Instant) {
        self.bytes = self.bytes.saturating_sub(cost);
        self.commands = self.commands.saturating_sub(1);
        self.answered = self.answered.saturating_add(cost);
        if self.slow_start && self.min_rtt.is_some() {
            // TCP's slow start: each answer lets two more into flight (the window doubles every
            // round trip) while the rate keeps up.
            self.limit = self.limit.saturating_add(cost).min(self.max_bytes);
        }
        let Some((start, before)) = self.round else {
            // The first answer starts the first round: what came before it was the round trip.
            self.round = Some((now, self.answered));
            return;
        };
        let elapsed = now.saturating_duration_since(start);
        let round = self.min_rtt.unwrap_or(MIN_ROUND).max(MIN_ROUND);
        if elapsed < round {
            return;
        }
        let rate = (self.answered - before) as f64 / elapsed.as_secs_f64();
        self.round = Some((now, self.answered));
        let bdp = |rate: f64| self.min_rtt.map_or(0, |rtt| (rate * rtt.as_secs_f64()) as u64).saturating_mul(GAIN);
        if self.slow_start && rate < self.best_rate * SLOW_START_GROWTH {
            // The rate stopped doubling with the window: something besides the pipe limits now.
            // What slow start added beyond GAIN x the measured product only queues at the server.
            self.slow_start = false;
            self.limit = bdp(self.best_rate.max(rate)).clamp(self.initial, self.max_bytes);
        }
        if rate > self.best_rate {
            self.best_rate = rate;
            self.limit = self.limit.max(bdp(rate)).min(self.max_bytes);
        }
    }

    /// A round-trip sample: a command sent while nothing was in flight, and the first byte of its
    /// answer `rtt` later. The smallest is kept (the path's delay, without queueing).
    pub fn rtt_sample(&mut self, rtt: Duration) {
        if rtt > Duration::ZERO {
            self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
        }
    }

    /// Bytes allowed in flight now.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Commands in flight now.
    pub fn commands(&self) -> usize {
        self.commands
    }

    /// Counted bytes in flight now.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The smallest round trip seen.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }
}

/// What the window learned, for the debug log: "4.0 MiB (slow start), best 71.3 MB/s, RTT 50.2 ms".
impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1} MiB", self.limit as f64 / (1024.0 * 1024.0))?;
        if self.slow_start {
            f.write_str(" (slow start)")?;
        }
        write!(f, ", best {:.1} MB/s", self.best_rate / 1e6)?;
        match self.min_rtt {
            Some(rtt) => write!(f, ", RTT {:.1} ms", rtt.as_secs_f64() * 1e3),
            None => f.write_str(", RTT not measured"),
        }
    }
}

/// Sends `TOP n 0` (headers only) for each of `numbers` through a [`Window`] (pipelined when the
/// server allows it) and hands each answer, in order, to `each` with its index in `numbers`.
/// `each` returns whether to go on sending (the answers to what is already in flight are still
/// read and handed over). The window keeps what it measured, for the session's next commands.
pub async fn tops(
    conn: &mut Pop3Conn,
    numbers: &[u32],
    window: &mut Window,
    mut each: impl FnMut(usize, Reply) -> bool,
) -> Result<()> {
    let (mut next, mut done, mut sending) = (0usize, 0usize, true);
    if let Some(rtt) = conn.min_rtt() {
        window.rtt_sample(rtt);
    }
    while done < next || (sending && next < numbers.len()) {
        while sending && next < numbers.len() && window.room(SMALL_ANSWER) {
            conn.send(&Command::Top(numbers[next], 0));
            window.sent(SMALL_ANSWER);
            next += 1;
        }
        let r = conn.reply().await?;
        window.answered(SMALL_ANSWER, Instant::now());
        sending &= each(done, r);
        done += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1024 * 1024;

    /// A made-up link: `rtt` round trip, `bandwidth` bytes/s at most, messages of `size`, and a
    /// fetcher that sends whenever the window has room (as `transfer` does). Runs for `rounds`
    /// round trips and returns the window's limit at the end of each.
    fn simulate(w: &mut Window, rtt: Duration, bandwidth: f64, size: u64, rounds: u32) -> Vec<u64> {
        let start = Instant::now();
        w.rtt_sample(rtt);
        let wire = Duration::from_secs_f64(size as f64 / bandwidth);
        let mut pending: std::collections::VecDeque<Instant> = std::collections::VecDeque::new();
        let (mut now, mut last_answer) = (start, start);
        let mut limits = Vec::new();
        for r in 1..=rounds {
            let end = start + rtt * r;
            loop {
                while w.room(size) {
                    w.sent(size);
                    // Answered a round trip after it was sent, once the answers before it are
                    // through the link.
                    let at = (now + rtt).max(last_answer + wire);
                    last_answer = at;
                    pending.push_back(at);
                }
                match pending.front() {
                    Some(&at) if at <= end => {
                        pending.pop_front();
                        now = at;
                        w.answered(size, now);
                    }
                    _ => break,
                }
            }
            now = end;
            limits.push(w.limit());
        }
        limits
    }

    #[test]
    fn grows_by_doubling_while_the_pipe_limits_then_stops_at_twice_the_bandwidth_delay_product() {
        let mut w = Window::with_bounds(MB / 2, 1024 * MB, 1_000_000);
        // 50 ms, 80 MB/s: the BDP is 4 MB.
        let limits = simulate(&mut w, Duration::from_millis(50), 80e6, 34_000, 12);
        for r in 0..2 {
            assert!(limits[r + 1] >= 2 * limits[r] - 2 * 34_000, "doubles while the pipe limits: {limits:?}");
        }
        let last = *limits.last().unwrap_or(&0);
        assert!((7_000_000..=9_000_000).contains(&last), "settles at 2 x BDP (8 MB): {limits:?}");
        assert_eq!(limits[8], last, "and stays there: {limits:?}");
    }

    #[test]
    fn a_longer_round_trip_gets_a_larger_window() {
        let mut near = Window::new(true);
        let mut far = Window::new(true);
        let near_l = simulate(&mut near, Duration::from_millis(10), 80e6, 34_000, 20);
        let mid_l = simulate(&mut Window::new(true), Duration::from_millis(50), 100e6, 34_000, 20);
        let far_l = simulate(&mut far, Duration::from_millis(200), 100e6, 34_000, 20);
        assert_eq!(*near_l.last().unwrap_or(&0), INITIAL_BYTES, "10 ms x 80 MB/s fits the initial window");
        let mid = *mid_l.last().unwrap_or(&0);
        assert!((9_000_000..=11_000_000).contains(&mid), "50 ms x 100 MB/s x 2: {mid_l:?}");
        assert_eq!(*far_l.last().unwrap_or(&0), MAX_BYTES, "200 ms x 100 MB/s x 2 is capped at MAX_BYTES");
    }

    #[test]
    fn loopback_stays_at_the_initial_window() {
        let mut w = Window::new(true);
        let limits = simulate(&mut w, Duration::from_micros(60), 400e6, 34_000, 1000);
        // Slow start runs until the first rounds (MIN_ROUND each) show no growth, then the
        // window goes back to twice the measured product, here below the initial window.
        assert!(limits.iter().all(|&l| l <= 2 * INITIAL_BYTES), "at most one doubling: {limits:?}");
        assert!(limits[200..].iter().all(|&l| l == INITIAL_BYTES), "{limits:?}");
    }

    #[test]
    fn bounds_hold_in_bytes_and_in_commands() {
        // Tiny answers: the command count binds, not the bytes.
        let mut w = Window::with_bounds(MB, 8 * MB, 100);
        let limits = simulate(&mut w, Duration::from_millis(100), 1e9, 10, 10);
        assert!(limits.iter().all(|&l| l <= 8 * MB));
        while w.room(10) {
            w.sent(10);
        }
        assert_eq!(w.commands(), 100, "at most max_commands in flight");
        // Huge answers: the bytes bind; one larger than the window still goes alone.
        let mut w = Window::with_bounds(MB, MB, 100);
        assert!(w.room(10 * MB), "an empty window takes any one command");
        w.sent(10 * MB);
        assert!(!w.room(1), "nothing else while it is in flight");
        w.answered(10 * MB, Instant::now());
        assert!(w.room(MB));
        w.sent(MB / 2);
        assert!(w.room(MB / 2) && !w.room(MB / 2 + 1), "bytes in flight stay within the limit");
        // And the byte limit never passes max_bytes, however fast the link.
        let mut w = Window::new(true);
        let limits = simulate(&mut w, Duration::from_millis(300), 1e12, 34_000, 30);
        assert!(limits.iter().all(|&l| l <= MAX_BYTES), "{limits:?}");
        assert_eq!(*limits.last().unwrap_or(&0), MAX_BYTES);
    }

    #[test]
    fn a_server_that_stops_reading_gets_no_more_than_one_window() {
        // Nothing is answered: the fetcher may send one window and then must wait — the server
        // (or the socket buffers) is asked to hold at most the limit and MAX_COMMANDS commands.
        let mut w = Window::new(true);
        let mut sent = 0u64;
        for _ in 0..1_000_000 {
            if !w.room(34_000) {
                break;
            }
            w.sent(34_000);
            sent += 1;
        }
        assert_eq!(sent, INITIAL_BYTES / 34_000);
        assert_eq!(w.bytes(), sent * 34_000);
        let mut w = Window::new(true);
        let mut sent = 0usize;
        while w.room(SMALL_ANSWER) && sent < 1_000_000 {
            w.sent(1);
            sent += 1;
        }
        assert_eq!(sent, MAX_COMMANDS);
        // Answers that stop arriving do not grow the window: no rate, no growth.
        let mut w = Window::new(true);
        w.rtt_sample(Duration::from_millis(100));
        w.sent(1000);
        let t = Instant::now();
        w.answered(1000, t);
        w.sent(1000);
        w.answered(1000, t + Duration::from_secs(600));
        assert!(w.limit() <= INITIAL_BYTES + 2000, "a trickle grows the window by what it answered, no more");
    }

    #[test]
    fn a_slow_round_never_shrinks_the_window() {
        let mut w = Window::with_bounds(4 * MB, 1024 * MB, 1_000_000);
        let fast = simulate(&mut w, Duration::from_millis(100), 80e6, 34_000, 10);
        let grown = *fast.last().unwrap_or(&0);
        assert!(grown > 4 * MB);
        // The store writer holds the fetcher back: a trickle of answers for a few seconds.
        let mut now = Instant::now() + Duration::from_secs(100);
        for _ in 0..50 {
            w.sent(34_000);
            now += Duration::from_millis(100);
            w.answered(34_000, now);
        }
        assert_eq!(w.limit(), grown);
    }

    #[test]
    fn lock_step_without_pipelining() {
        let mut w = Window::new(false);
        assert!(w.room(u64::MAX));
        w.sent(10);
        assert!(!w.room(0), "one command at a time");
        let t = Instant::now();
        w.rtt_sample(Duration::from_millis(50));
        for i in 0..100 {
            w.answered(10, t + Duration::from_millis(50 * i));
            assert!(w.room(1_000_000));
            w.sent(10);
            assert!(!w.room(0));
        }
    }

    #[test]
    fn rtt_keeps_the_smallest_sample() {
        let mut w = Window::new(true);
        assert_eq!(w.min_rtt(), None);
        w.rtt_sample(Duration::from_millis(80));
        w.rtt_sample(Duration::from_millis(50));
        w.rtt_sample(Duration::from_millis(70));
        w.rtt_sample(Duration::ZERO);
        assert_eq!(w.min_rtt(), Some(Duration::from_millis(50)));
    }
}
