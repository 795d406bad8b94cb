//! Upload bandwidth limits: a token bucket shared by every file a job copies at the same
//! time, and a reader that draws from it (blocking; it runs on the copy threads).

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A token bucket of `rate` bytes per second holding at most one second of burst.
#[derive(Debug)]
pub struct Throttle {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl Throttle {
    /// `None` for 0 (unlimited).
    pub fn new(bytes_per_second: u64) -> Option<Arc<Throttle>> {
        (bytes_per_second > 0).then(|| {
            Arc::new(Throttle {
                rate: bytes_per_second as f64,
                state: Mutex::new((bytes_per_second as f64, Instant::now())),
            })
        })
    }

    /// Takes `n` bytes, sleeping until they are available.
    pub fn take(&self, n: usize) {
        let wait = {
            let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let (tokens, last) = *g;
            let refilled =
                (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.rate);
            let left = refilled - n as f64;
            *g = (left, now);
            if left < 0.0 {
                Duration::from_secs_f64(-left / self.rate)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

/// A reader whose bytes are paid for from a [`Throttle`] (or not at all).
pub struct Throttled<R> {
    inner: R,
    throttle: Option<Arc<Throttle>>,
}

impl<R> Throttled<R> {
    pub fn new(inner: R, throttle: Option<Arc<Throttle>>) -> Self {
        Self { inner, throttle }
    }
}

impl<R: Read> Read for Throttled<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Small reads so that parallel copies share the bucket fairly.
        let cap = if self.throttle.is_some() { buf.len().min(256 << 10) } else { buf.len() };
        let n = self.inner.read(&mut buf[..cap])?;
        if let Some(t) = &self.throttle {
            t.take(n);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
