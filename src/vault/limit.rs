//! Following a Vault server's rate limit (issue 17). Every request [`super::raw::send`] makes to one
//! (address, Vault namespace) takes a turn from one [`Limiter`], shared by every VaultSecret that
//! uses it — fifty objects retrying on their own never lower the aggregate rate; one limiter does.
//!
//! Unlimited until the server answers 429. Then multiplicative decrease and a cubic increase (as
//! TCP CUBIC): the allowed rate halves from what was actually being sent, at most once per
//! [`CALM`] since one burst of 429s is one signal, then grows back towards the refused rate,
//! lingers near it around [`PROBE`] (20 s) after the decrease — one 429 per such cycle keeps
//! refusals to a few percent — and beyond it grows ever faster, since a server that accepts more
//! has raised its limit. Once the allowed rate is twice what is being sent and no 429 came for
//! [`CALM`]·10, the limit is lifted. A `Retry-After` in seconds holds every
//! request until then. A request whose turn is more than [`MAX_WAIT`] away is not sent: it fails
//! as `RateLimited` at once (its VaultSecret retries shortly).
//!
//! The limiters are process-wide: a rate limit belongs to the server (and this client), not to any
//! one component that talks to it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// Lowest rate the limiter falls to (requests per second).
const MIN_RATE: f64 = 0.5;

/// One decrease per this long at most; also the window the sending rate is measured over.
const CALM: Duration = Duration::from_secs(2);

/// How long the rate takes to grow back to the rate that was refused.
const PROBE: Duration = Duration::from_secs(20);

/// Longest a request waits for its turn before it fails instead.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The sending rate of one server, adjusted to its 429s.
#[derive(Debug)]
pub struct Limiter {
    /// The server, for logs.
    address: String,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The limit, while there is one.
    limit: Option<Limit>,
    /// When requests were sent lately (within [`CALM`]), to know the rate actually sent.
    sent: VecDeque<Instant>,
    /// No request before this (`Retry-After`).
    held_until: Option<Instant>,
    /// A request got no answer in time: the server may have taken it in and be stuck.
    suspect: bool,
}

#[derive(Debug, Clone, Copy)]
struct Limit {
    /// The rate the server refused at the last decrease (requests per second)...
    refused: f64,
    /// ...which happened then.
    since: Instant,
    /// The next free turn.
    next: Instant,
}

impl Limit {
    /// The allowed rate at `now`, `t` = time since the decrease / [`PROBE`]: a cubic around the
    /// refused rate R, R·(1 + ½(t − 1)³) — half of R at once, back near R soon and staying close
    /// to it for a while (where the server's limit likely is), then growing ever faster beyond it
    /// (a server that accepts more than R has raised or lifted its limit).
    fn rate(&self, now: Instant) -> f64 {
        let t = now.saturating_duration_since(self.since).as_secs_f64() / PROBE.as_secs_f64();
        let x = t.min(10.0) - 1.0;
        (self.refused * (1.0 + 0.5 * x * x * x)).max(MIN_RATE)
    }
}

/// What a request should do.
#[derive(Debug, PartialEq, Eq)]
pub enum Turn {
    /// Send now.
    Now,
    /// Send at this instant.
    At(Instant),
    /// Do not send: the turn is further away than [`MAX_WAIT`].
    TooFar,
}

impl Limiter {
    fn new(address: &str) -> Self {
        Limiter {
            address: address.to_owned(),
            state: Mutex::new(State {
                limit: None,
                sent: VecDeque::new(),
                held_until: None,
                suspect: false,
            }),
        }
    }
}

impl Limiter {
    /// The limiter of the server at `address` in Vault namespace `namespace`.
    pub fn of(address: &str, namespace: Option<&str>) -> Arc<Limiter> {
        /// By (address, Vault namespace).
        type All = Mutex<HashMap<(String, String), Arc<Limiter>>>;
        static ALL: LazyLock<All> = LazyLock::new(Mutex::default);
        let key = (address.to_owned(), namespace.unwrap_or_default().to_owned());
        ALL.lock()
            .entry(key)
            .or_insert_with(|| Arc::new(Limiter::new(address)))
            .clone()
    }

    /// Takes the next turn at `now`.
    pub fn turn(&self, now: Instant) -> Turn {
        let mut state = self.state.lock();
        let held = state.held_until.filter(|t| *t > now);
        let earliest = held.unwrap_or(now);
        let at = match state.limit.as_mut() {
            None => earliest,
            Some(limit) => {
                let at = limit.next.max(earliest);
                if at.saturating_duration_since(now) > MAX_WAIT {
                    return Turn::TooFar;
                }
                limit.next = at + Duration::from_secs_f64(1.0 / limit.rate(at));
                at
            }
        };
        if at.saturating_duration_since(now) > MAX_WAIT {
            return Turn::TooFar;
        }
        state.sent.push_back(at);
        if at > now { Turn::At(at) } else { Turn::Now }
    }

    /// Takes a turn and waits for it; `false` when it is too far to wait for.
    pub async fn wait_turn(&self) -> bool {
        match self.turn(Instant::now()) {
            Turn::Now => true,
            Turn::At(at) => {
                tokio::time::sleep_until(at).await;
                true
            }
            Turn::TooFar => false,
        }
    }

    /// Whether a request to this server got no answer in time and none has been answered since.
    /// A server that took a request in and hangs may still carry it out when it recovers (an
    /// issue the operator gave up on, issued anyway): while suspect, each request is preceded by
    /// a harmless probe ([`super::raw::send`]), so a hung server piles up no further issues.
    pub fn is_suspect(&self) -> bool {
        self.state.lock().suspect
    }

    /// Learns that a request got no answer within the timeout (`timed_out`) or none at all.
    pub fn unanswered(&self, timed_out: bool) {
        if timed_out {
            self.state.lock().suspect = true;
        }
    }

    /// Learns that the server answered (anything, even an error), so it is not stuck.
    pub fn responsive(&self) {
        self.state.lock().suspect = false;
    }

    /// Learns from an answer at `now`: `limited` for a 429, with its `Retry-After`.
    pub fn answered(&self, now: Instant, limited: bool, retry_after: Option<Duration>) {
        let mut state = self.state.lock();
        state.suspect = false;
        while state
            .sent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > CALM)
        {
            state.sent.pop_front();
        }
        let sending = state.sent.len() as f64 / CALM.as_secs_f64();
        if limited {
            if let Some(wait) = retry_after {
                state.held_until = Some(now + wait.min(MAX_RETRY_AFTER));
            }
            let decrease = match state.limit {
                None => Some(sending.max(MIN_RATE * 2.0)),
                Some(limit) if now.saturating_duration_since(limit.since) >= CALM => {
                    Some(limit.rate(now).min(sending.max(MIN_RATE * 2.0)))
                }
                Some(_) => None,
            };
            if let Some(from) = decrease {
                let first = state.limit.is_none();
                let refused = from.max(MIN_RATE);
                let base = (refused / 2.0).max(MIN_RATE);
                let next = state.limit.map_or(now, |l| l.next.max(now));
                state.limit = Some(Limit {
                    refused,
                    since: now,
                    next,
                });
                if first {
                    tracing::info!(
                        address = self.address,
                        "Vault is rate-limiting this operator: sending at most {base:.1} requests/s to it, more as it allows"
                    );
                } else {
                    tracing::debug!(
                        address = self.address,
                        "Vault is still rate-limiting: at most {base:.1} requests/s"
                    );
                }
            }
        } else if let Some(limit) = state.limit {
            let quiet = now.saturating_duration_since(limit.since) >= CALM * 10;
            if quiet && limit.rate(now) >= 2.0 * sending {
                state.limit = None;
                tracing::info!(
                    address = self.address,
                    "Vault no longer rate-limits this operator: requests are sent unthrottled again"
                );
            }
        }
    }

    /// The allowed rate at `now`, `None` while unlimited.
    #[cfg(test)]
    fn rate(&self, now: Instant) -> Option<f64> {
        self.state.lock().limit.map(|l| l.rate(now))
    }
}

/// The delay a `Retry-After` header gives, in seconds (an HTTP date is ignored).
pub fn retry_after(value: Option<&http::HeaderValue>) -> Option<Duration> {
    let seconds: u64 = value?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends at `demand` requests/s (one caller after the other: each waits for its turn) for
    /// `secs` against a server allowing `quota` per second (a
    /// fixed one-second window, as OpenBao's quota) or none; returns (sent, refused).
    fn simulate(limiter: &Limiter, start: Instant, secs: u64, demand: f64, quota: Option<usize>) -> (usize, usize) {
        let mut wanted = start;
        let step = Duration::from_secs_f64(1.0 / demand);
        let end = start + Duration::from_secs(secs);
        let (mut sent, mut refused) = (0, 0);
        let mut window = (0u64, 0usize);
        // Requests queue behind the limiter as callers would.
        let mut ready = start;
        loop {
            let now = wanted.max(ready);
            if now >= end {
                break;
            }
            let at = match limiter.turn(now) {
                Turn::Now => now,
                Turn::At(at) => at,
                Turn::TooFar => panic!("a turn beyond MAX_WAIT at a steady demand"),
            };
            ready = at;
            let second = at.duration_since(start).as_secs();
            if window.0 != second {
                window = (second, 0);
            }
            window.1 += 1;
            let limited = quota.is_some_and(|q| window.1 > q);
            limiter.answered(at, limited, None);
            sent += 1;
            refused += usize::from(limited);
            wanted += step;
        }
        (sent, refused)
    }

    #[test]
    fn unlimited_until_a_429_then_the_rate_settles_under_the_quota_with_few_refusals() {
        let limiter = Limiter::new("http://bao");
        let start = Instant::now();
        assert_eq!(limiter.turn(start), Turn::Now);
        assert_eq!(limiter.rate(start), None);
        // Ten a second against a quota of five: the first minute settles it.
        let (_, _) = simulate(&limiter, start, 60, 10.0, Some(5));
        let later = start + Duration::from_secs(60);
        let (sent, refused) = simulate(&limiter, later, 120, 10.0, Some(5));
        let share = refused as f64 / sent as f64;
        eprintln!("{refused} of {sent} refused ({:.1} %)", share * 100.0);
        assert!(share < 0.03, "{refused} of {sent} refused");
        assert!(
            sent as f64 > 120.0 * 3.0,
            "only {sent} sent in 120 s under a quota of 5/s"
        );
        // The quota goes: within a minute the limit is lifted.
        let gone = later + Duration::from_secs(120);
        let (sent, refused) = simulate(&limiter, gone, 60, 10.0, None);
        assert_eq!(refused, 0);
        let end = gone + Duration::from_secs(60);
        assert_eq!(
            limiter.rate(end),
            None,
            "still limited after a minute without 429 ({sent} sent)"
        );
    }

    #[test]
    fn the_rate_halves_once_per_burst_and_the_limit_lifts_when_quiet() {
        let limiter = Limiter::new("http://bao");
        let now = Instant::now();
        for i in 0..8 {
            limiter.turn(now + Duration::from_millis(i * 100));
        }
        let t = now + Duration::from_millis(800);
        limiter.answered(t, true, None);
        let first = limiter.rate(t).unwrap();
        assert!((1.0..=2.5).contains(&first), "{first}");
        for _ in 0..5 {
            limiter.answered(t, true, None);
        }
        assert_eq!(limiter.rate(t), Some(first), "one burst, one decrease");
        // Nothing sent for a while: twice the sending rate is soon reached, and it lifts.
        let quiet = t + CALM * 10;
        limiter.answered(quiet, false, None);
        assert_eq!(limiter.rate(quiet), None);
    }

    #[test]
    fn a_timeout_makes_the_server_suspect_until_anything_answers() {
        let limiter = Limiter::new("http://bao");
        limiter.unanswered(false);
        assert!(!limiter.is_suspect(), "a refused connection took nothing in");
        limiter.unanswered(true);
        assert!(limiter.is_suspect());
        limiter.answered(Instant::now(), false, None);
        assert!(!limiter.is_suspect());
        limiter.unanswered(true);
        limiter.responsive();
        assert!(!limiter.is_suspect());
    }

    #[test]
    fn retry_after_holds_every_request_and_too_far_fails_fast() {
        let limiter = Limiter::new("http://bao");
        let now = Instant::now();
        limiter.turn(now);
        limiter.answered(now, true, Some(Duration::from_secs(5)));
        match limiter.turn(now) {
            Turn::At(at) => assert!(at >= now + Duration::from_secs(5)),
            other => panic!("{other:?}"),
        }
        limiter.answered(now, true, Some(Duration::from_secs(600)));
        // Capped at a minute, which is beyond what a request waits for.
        assert_eq!(limiter.turn(now + Duration::from_secs(10)), Turn::TooFar);
        assert_eq!(
            retry_after(Some(&http::HeaderValue::from_static(" 7 "))),
            Some(Duration::from_secs(7))
        );
        let date = http::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(retry_after(Some(&date)), None);
    }
}
