//! Waking a send at its time, to the tenth of a millisecond.
//!
//! Tokio's timer counts whole milliseconds and rounds a deadline up to the next one, so a send
//! woken by it goes 0–1 ms after its time, and more when the runtime is busy. Every such
//! millisecond is taken from the number's window (the send a window later waits for it), and
//! one past the late tolerance costs a store call to move the send. So the coarse timer
//! wakes a send shortly before its time, and one thread that sleeps on the OS clock (tens of
//! microseconds late) wakes it at its time.
//!
//! Under a paused or mocked tokio clock (tests), or when the deadline is far by the real
//! clock, the tokio timer alone is used.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::{Instant, sleep_until};

/// How long before its time the tokio timer wakes a send: its millisecond and some.
const COARSE_EARLY: Duration = Duration::from_micros(2_500);

/// Waits until `at`. A send due within the coarse span (a process behind its schedule, as
/// when sending unpaced) waits on the tokio timer: an alarm each would cost more CPU than
/// its precision is worth there.
pub(crate) async fn until(at: Instant) {
    match at.checked_sub(COARSE_EARLY) {
        Some(early) if early > Instant::now() => sleep_until(early).await,
        _ => {
            sleep_until(at).await;
            return;
        }
    }
    let (real_now, now) = (std::time::Instant::now(), Instant::now());
    // The tokio clock is the real one (not paused), and the deadline is near by both.
    let real =
        now.into_std().max(real_now) - now.into_std().min(real_now) < Duration::from_micros(500);
    let left = at.saturating_duration_since(now);
    if !real || left > COARSE_EARLY * 2 {
        sleep_until(at).await;
        return;
    }
    if left.is_zero() {
        return;
    }
    let (tx, rx) = oneshot::channel();
    if timer().send(Alarm(at.into_std(), tx)).is_err() {
        sleep_until(at).await;
        return;
    }
    // A lost alarm (the thread gone) falls back to the tokio timer.
    if rx.await.is_err() {
        sleep_until(at).await;
    }
}

struct Alarm(std::time::Instant, oneshot::Sender<()>);

impl PartialEq for Alarm {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Alarm {}
impl PartialOrd for Alarm {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Alarm {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

/// The process's one precise timer thread, started on first use.
fn timer() -> &'static Sender<Alarm> {
    static TIMER: OnceLock<Sender<Alarm>> = OnceLock::new();
    TIMER.get_or_init(|| {
        let (tx, rx) = channel();
        // Should the thread fail to start, every send returns an error and the tokio timer
        // is used.
        let _ = std::thread::Builder::new()
            .name("herald-send-timer".into())
            .spawn(move || ring(&rx));
        tx
    })
}

/// Wakes each alarm at its time.
fn ring(rx: &Receiver<Alarm>) {
    let mut due: BinaryHeap<Reverse<Alarm>> = BinaryHeap::new();
    loop {
        let now = std::time::Instant::now();
        while due.peek().is_some_and(|Reverse(a)| a.0 <= now) {
            if let Some(Reverse(Alarm(_, tx))) = due.pop() {
                let _ = tx.send(());
            }
        }
        let next = match due.peek() {
            Some(Reverse(a)) => rx.recv_timeout(a.0.saturating_duration_since(now)),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match next {
            Ok(alarm) => due.push(Reverse(alarm)),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_at_its_time_never_before() {
        for ms in [0u64, 1, 3, 7, 20] {
            let at = Instant::now() + Duration::from_millis(ms);
            until(at).await;
            assert!(Instant::now() >= at, "woke before its time ({ms} ms)");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn under_a_paused_clock_the_tokio_timer_is_used() {
        let at = Instant::now() + Duration::from_secs(30);
        let real = std::time::Instant::now();
        until(at).await;
        assert!(Instant::now() >= at);
        assert!(
            real.elapsed() < Duration::from_secs(5),
            "waited in real time"
        );
    }
}
