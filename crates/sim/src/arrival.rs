//! When a request reached the simulator.
//!
//! Meta counts a number's rate by when its requests reach Meta's edge. The simulator shares a
//! busy machine with what it measures: its one thread handles a burst of requests one after
//! another, or waits for a core, so a handler may run milliseconds after its request's bytes
//! arrived. Stamped by the handler's clock, a sender that kept to its rate would look bursty,
//! and the simulator's own delays would count against it.
//!
//! On Linux each connection asks the kernel for the receive time of the bytes it reads
//! (`SO_TIMESTAMPNS`), and each request carries the time its head arrived as an [`Arrival`]
//! extension. Elsewhere, and for requests that carry none (a router called in-process), the
//! handler's clock is used.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

/// When a request's head reached the simulator, by the kernel's clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival(pub(crate) Instant);

/// The receive time of the last bytes a connection read.
#[derive(Debug, Clone, Default)]
pub(crate) struct LastRead(Arc<Mutex<Option<Instant>>>);

impl LastRead {
    pub(crate) fn get(&self) -> Option<Instant> {
        self.0.lock().ok().and_then(|g| *g)
    }

    /// A read without a stamp clears it: the handler's clock is used then, never an older
    /// read's time.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    fn set(&self, at: Option<Instant>) {
        if let Ok(mut g) = self.0.lock() {
            *g = at;
        }
    }
}

/// A reading of the runtime's clock and the real clock at the same moment, for turning the
/// kernel's realtime stamps into instants. Read one after the other, the two can be a
/// preemption apart (hundreds of microseconds were seen on a busy machine, a good part of the
/// millisecond Herald's pacing leaves for the way to Meta), which would count the request that
/// late. So the real clock is read between two readings of the runtime's, and the pair is
/// taken again while those are more than [`TOGETHER`] apart (up to [`TRIES`] times; then the
/// closest pair), the runtime's reading being their midpoint. `read` reads the runtime's
/// clock, then the real one.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn clocks_together<R>(mut read: impl FnMut() -> (Instant, R)) -> (Instant, R) {
    // How far apart the runtime's readings were, their midpoint, and the real reading.
    let mut pair = || {
        let (before, real) = read();
        let (after, _) = read();
        let apart = after.duration_since(before);
        (apart, before + apart / 2, real)
    };
    let mut best = pair();
    for _ in 1..TRIES {
        if best.0 <= TOGETHER {
            break;
        }
        let next = pair();
        if next.0 < best.0 {
            best = next;
        }
    }
    (best.1, best.2)
}

/// How close together the two clocks' readings must be to be taken at once.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const TOGETHER: Duration = Duration::from_micros(20);
/// How many pairs of readings to try for one that close.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const TRIES: usize = 4;

/// A connection's stream; see [`stamped`].
#[cfg(target_os = "linux")]
pub(crate) type Stream = imp::Stamped;
#[cfg(not(target_os = "linux"))]
pub(crate) type Stream = TcpStream;

/// Asks the kernel to stamp what reaches the listener from now on, so that a request that
/// arrived before its connection was accepted has its time too (accepted sockets inherit it).
pub(crate) fn stamp_listener(listener: &tokio::net::TcpListener) {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::socket::setsockopt(
        listener,
        nix::sys::socket::sockopt::ReceiveTimestampns,
        &true,
    ) {
        tracing::warn!(error = %e, "no receive timestamps: requests count when handled");
    } else {
        imp::until_stamping();
    }
    #[cfg(not(target_os = "linux"))]
    let _ = listener;
}

/// Wraps an accepted connection so that its reads note when their bytes arrived (on Linux;
/// elsewhere the stream is read plainly and `LastRead` stays empty).
pub(crate) fn stamped(stream: TcpStream) -> (Stream, LastRead) {
    let last = LastRead::default();
    #[cfg(target_os = "linux")]
    let stream = imp::Stamped::new(stream, last.clone());
    (stream, last)
}

#[cfg(target_os = "linux")]
mod imp {
    use std::io::{self, IoSliceMut};
    use std::os::fd::AsRawFd;
    use std::pin::Pin;
    use std::task::{Context, Poll, ready};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use nix::sys::socket::{
        ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt::ReceiveTimestampns,
    };
    use nix::sys::time::TimeSpec;
    use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
    use tokio::net::TcpStream;
    use tokio::time::Instant;

    use super::LastRead;

    pub(crate) struct Stamped {
        stream: TcpStream,
        last: LastRead,
        /// Room for the timestamp's control message.
        control: Vec<u8>,
        /// Whether the kernel stamps this socket's reads (else they are read plainly).
        stamps: bool,
    }

    impl Stamped {
        pub(super) fn new(stream: TcpStream, last: LastRead) -> Self {
            let stamps = setsockopt(&stream, ReceiveTimestampns, &true).is_ok();
            Self {
                stream,
                last,
                control: nix::cmsg_space!(TimeSpec),
                stamps,
            }
        }
    }

    /// Waits until the kernel stamps what arrives. Linux turns stamping on for the whole
    /// machine when the first socket asks, by a deferred work item, so a request that came
    /// right after the listener asked could go unstamped. Each probe sends a byte over a
    /// loopback connection of its own and looks for the stamp; after 200 ms of trying, the
    /// early requests are left to the handler's clock.
    pub(super) fn until_stamping() {
        for _ in 0..100 {
            if probe().unwrap_or(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        tracing::warn!("receive timestamps are slow to start: early requests count when handled");
    }

    /// Whether a byte sent now over loopback arrives stamped (an error ends the waiting).
    fn probe() -> io::Result<bool> {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        setsockopt(&listener, ReceiveTimestampns, &true).map_err(io::Error::from)?;
        let mut client = std::net::TcpStream::connect(listener.local_addr()?)?;
        let (server, _) = listener.accept()?;
        client.write_all(b"x")?;
        let mut byte = [0u8; 1];
        let mut control = nix::cmsg_space!(TimeSpec);
        let mut iov = [IoSliceMut::new(&mut byte)];
        let msg = recvmsg::<()>(
            server.as_raw_fd(),
            &mut iov,
            Some(&mut control),
            MsgFlags::empty(),
        )
        .map_err(io::Error::from)?;
        let stamped = msg
            .cmsgs()
            .map_err(io::Error::from)?
            .any(|m| matches!(m, ControlMessageOwned::ScmTimestampns(_)));
        Ok(stamped)
    }

    /// The instant a realtime kernel stamp stands for, by the runtime's clock (its age is
    /// what the real clock says, a few microseconds as a rule).
    fn instant_of(ts: TimeSpec) -> Instant {
        let secs = u64::try_from(ts.tv_sec()).unwrap_or(0);
        let nanos = u32::try_from(ts.tv_nsec()).unwrap_or(0);
        let stamped = UNIX_EPOCH + Duration::new(secs, nanos);
        let (now, real) = super::clocks_together(|| (Instant::now(), SystemTime::now()));
        let age = real.duration_since(stamped).unwrap_or(Duration::ZERO);
        now.checked_sub(age).unwrap_or(now)
    }

    /// One non-blocking read with its receive time.
    fn recv(
        stream: &TcpStream,
        control: &mut [u8],
        dst: &mut [u8],
    ) -> io::Result<(usize, Option<TimeSpec>)> {
        let mut iov = [IoSliceMut::new(dst)];
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(control),
            MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)?;
        let at = msg.cmsgs().ok().and_then(|mut c| {
            c.find_map(|m| match m {
                ControlMessageOwned::ScmTimestampns(ts) => Some(ts),
                _ => None,
            })
        });
        Ok((msg.bytes, at))
    }

    impl AsyncRead for Stamped {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            if !this.stamps {
                return Pin::new(&mut this.stream).poll_read(cx, buf);
            }
            loop {
                ready!(this.stream.poll_read_ready(cx))?;
                let dst = buf.initialize_unfilled();
                let (stream, control) = (&this.stream, &mut this.control);
                match stream.try_io(Interest::READABLE, || recv(stream, control, dst)) {
                    Ok((n, at)) => {
                        this.last.set(at.map(instant_of));
                        buf.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
        }
    }

    impl AsyncWrite for Stamped {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
        }

        fn is_write_vectored(&self) -> bool {
            self.stream.is_write_vectored()
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().stream).poll_flush(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A reader whose runtime clock, from `start`, moves by the given steps (µs) before each
    /// reading; its "real clock" is the reading's number (1, 2, …).
    fn reader(start: Instant, steps: &[u64]) -> impl FnMut() -> (Instant, usize) {
        let mut steps = steps.iter().copied();
        let (mut at, mut n) = (start, 0);
        move || {
            at += Duration::from_micros(steps.next().unwrap());
            n += 1;
            (at, n)
        }
    }

    #[test]
    fn a_pair_read_close_together_is_taken_at_once() {
        let start = Instant::now();
        let (mid, real) = clocks_together(reader(start, &[0, 6, 100, 1]));
        assert_eq!(real, 1);
        assert_eq!(mid, start + Duration::from_micros(3));
    }

    #[test]
    fn a_pair_split_by_a_preemption_is_read_again() {
        // 300 µs between the first pair's runtime readings (the thread was preempted), 4 µs
        // between the second's: the second counts, at its midpoint.
        let start = Instant::now();
        let (mid, real) = clocks_together(reader(start, &[0, 300, 50, 4]));
        assert_eq!(real, 3);
        assert_eq!(mid, start + Duration::from_micros(352));
    }

    #[test]
    fn without_a_close_pair_the_closest_counts() {
        let start = Instant::now();
        let steps = [0, 300, 10, 90, 10, 200, 10, 400];
        let (mid, real) = clocks_together(reader(start, &steps));
        assert_eq!(real, 3);
        assert_eq!(mid, start + Duration::from_micros(310 + 45));
    }
}
