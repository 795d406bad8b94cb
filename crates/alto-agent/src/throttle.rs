//! Upload bandwidth limits: token buckets and a reader that draws from them (blocking; it
//! runs on the copy threads).
//!
//! Two buckets apply to every copy: the **host's** limit (one bucket per agent, shared by
//! every job it runs at once and every file they copy, its rate set from the server's job
//! offers) and the **job's** own limit, if its document has one (shared by that job's
//! parallel copies). A byte is paid for in both, so together the jobs of a host never use
//! more than the host's limit.

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// On-access fills in progress in this process: background copies (tiering, recall jobs)
/// step aside while there are any, so a job never delays a reader waiting on a stub.
static FOREGROUND: AtomicUsize = AtomicUsize::new(0);

/// The longest a background read waits for on-access fills before it reads one chunk anyway
/// (so a stream of on-access recalls slows jobs down but never stops them).
const MAX_YIELD: Duration = Duration::from_millis(250);

/// Marks an on-access fill in progress until dropped.
#[must_use]
pub struct Foreground(());

/// Starts a foreground (on-access) operation: background copies yield until it ends.
pub fn foreground() -> Foreground {
    FOREGROUND.fetch_add(1, Ordering::SeqCst);
    Foreground(())
}

impl Drop for Foreground {
    fn drop(&mut self) {
        FOREGROUND.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Waits (at most [`MAX_YIELD`]) while on-access fills are in progress; returns how long.
fn yield_to_foreground() -> Duration {
    let start = Instant::now();
    while FOREGROUND.load(Ordering::SeqCst) > 0 && start.elapsed() < MAX_YIELD {
        std::thread::sleep(Duration::from_millis(2));
    }
    start.elapsed()
}

/// A token bucket of `rate` bytes per second holding at most one second of burst. A rate of 0
/// is unlimited. Takers may go into debt: each waits until its own bytes are paid for, so
/// concurrent takers share the rate instead of each getting it.
#[derive(Debug)]
pub struct Throttle {
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Throttle {
    /// `None` for 0 (unlimited).
    pub fn new(bytes_per_second: u64) -> Option<Arc<Throttle>> {
        (bytes_per_second > 0).then(|| Throttle::shared(bytes_per_second))
    }

    /// A bucket whose rate may change later ([`Throttle::set_rate`]); 0: unlimited for now.
    pub fn shared(bytes_per_second: u64) -> Arc<Throttle> {
        Arc::new(Throttle {
            state: Mutex::new(Bucket {
                rate: bytes_per_second as f64,
                tokens: bytes_per_second as f64,
                last: Instant::now(),
            }),
        })
    }

    /// Changes the rate (0: unlimited); the bucket starts with at most one second's worth.
    pub fn set_rate(&self, bytes_per_second: u64) {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let rate = bytes_per_second as f64;
        if rate != g.rate {
            g.tokens = if g.rate == 0.0 { rate } else { g.tokens.min(rate) };
            g.rate = rate;
            g.last = Instant::now();
        }
    }

    /// The current rate (0: unlimited).
    pub fn rate(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).rate as u64
    }

    /// Takes `n` bytes, sleeping until they are available.
    pub fn take(&self, n: usize) {
        let wait = {
            let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if g.rate == 0.0 {
                return;
            }
            let now = Instant::now();
            let refilled =
                (g.tokens + now.duration_since(g.last).as_secs_f64() * g.rate).min(g.rate);
            let left = refilled - n as f64;
            g.tokens = left;
            g.last = now;
            if left < 0.0 {
                Duration::from_secs_f64(-left / g.rate)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

/// A reader whose bytes are paid for in every one of its [`Throttle`]s (or not at all).
pub struct Throttled<R> {
    inner: R,
    throttles: Vec<Arc<Throttle>>,
    /// A job's copy: it yields to on-access fills ([`foreground`]).
    background: bool,
}

impl<R> Throttled<R> {
    pub fn new(inner: R, throttle: Option<Arc<Throttle>>) -> Self {
        Self { inner, throttles: throttle.into_iter().collect(), background: false }
    }

    /// Pays for every byte in each of `throttles` (e.g. the host's and the job's).
    pub fn all(inner: R, throttles: Vec<Arc<Throttle>>) -> Self {
        Self { inner, throttles, background: false }
    }

    /// [`Throttled::all`] for a job's copy, which also steps aside for on-access fills.
    pub fn background(inner: R, throttles: Vec<Arc<Throttle>>) -> Self {
        Self { inner, throttles, background: true }
    }
}

impl<R: Read> Read for Throttled<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Small reads so that parallel copies share the buckets fairly.
        if self.background {
            yield_to_foreground();
        }
        let limited = self.background || self.throttles.iter().any(|t| t.rate() > 0);
        let cap = if limited { buf.len().min(256 << 10) } else { buf.len() };
        let n = self.inner.read(&mut buf[..cap])?;
        for t in &self.throttles {
            t.take(n);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn background_copies_wait_for_on_access_fills_but_never_forever() {
        let data = vec![1u8; 1 << 20];
        // No fill in progress: no wait.
        assert!(yield_to_foreground() < Duration::from_millis(50));
        let g = foreground();
        let start = Instant::now();
        let mut r = Throttled::background(&data[..], Vec::new());
        let mut buf = vec![0u8; 1 << 20];
        let n = r.read(&mut buf).unwrap();
        // It waited (bounded) and then read one chunk, not the whole buffer.
        assert!(start.elapsed() >= MAX_YIELD, "{:?}", start.elapsed());
        assert_eq!(n, 256 << 10);
        // A foreground reader is never held back.
        let start = Instant::now();
        let mut f = Throttled::all(&data[..], Vec::new());
        assert_eq!(f.read(&mut buf).unwrap(), 1 << 20);
        assert!(start.elapsed() < MAX_YIELD);
        drop(g);
        let start = Instant::now();
        assert!(r.read(&mut buf).unwrap() > 0);
        assert!(start.elapsed() < MAX_YIELD, "the fill ended: no more waiting");
    }

    #[test]
    fn unlimited_is_none() {
        assert!(Throttle::new(0).is_none());
    }

    #[test]
    fn a_limited_copy_takes_at_least_its_share_of_time() {
        // 4 MiB/s, 1 s of burst: 6 MiB need at least ~0.5 s beyond the burst.
        let t = Throttle::new(4 << 20);
        let data = vec![7u8; 6 << 20];
        let start = Instant::now();
        let mut r = Throttled::new(&data[..], t);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        assert!(start.elapsed() >= Duration::from_millis(450), "{:?}", start.elapsed());
    }

    #[test]
    fn concurrent_readers_share_one_bucket() {
        // 4 MiB/s shared by two readers of 6 MiB each: 12 MiB need at least 2 s (one second's
        // worth is burst); with a bucket each at the full rate they would need 0.5 s.
        let t = Throttle::shared(4 << 20);
        let start = Instant::now();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || {
                    let data = vec![7u8; 6 << 20];
                    let mut r = Throttled::all(&data[..], vec![t]);
                    std::io::copy(&mut r, &mut std::io::sink()).unwrap()
                })
            })
            .collect();
        let bytes: u64 = threads.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(bytes, 12 << 20);
        assert!(start.elapsed() >= Duration::from_millis(1900), "{:?}", start.elapsed());
    }

    #[test]
    fn rates_change_and_zero_is_unlimited() {
        let t = Throttle::shared(0);
        let start = Instant::now();
        t.take(1 << 30);
        assert!(start.elapsed() < Duration::from_millis(100));
        t.set_rate(1 << 20);
        assert_eq!(t.rate(), 1 << 20);
        t.take(1 << 20); // the first second's worth
        let start = Instant::now();
        t.take(512 << 10);
        assert!(start.elapsed() >= Duration::from_millis(400), "{:?}", start.elapsed());
    }
}
