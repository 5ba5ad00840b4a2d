//! A link conditioner: latency, jitter and a bandwidth cap (and, on links
//! that declare themselves unreliable, loss and duplication) in front of any
//! [`Link`], deterministic from a seed.
//!
//! It runs on the caller's clock, never on timers: [`ConditionedLink::poll`]
//! takes `now` (the app's virtual or real time), stamps the frames sent since
//! the previous poll with it, and hands the inner link every frame whose
//! delivery time has come. Delays are therefore honoured to within one poll,
//! and a test on virtual time sees exactly the same schedule on every run with
//! the same seed.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use mokosh_net::io::conditioner::{ConditionedLink, LinkConditionerConfig};
//! use mokosh_net::io::{memory, IoConfig, IoEvent};
//!
//! let (listener, server) = memory::listen(IoConfig::default());
//! let client = listener.connect();
//! let Ok(IoEvent::Opened { link, .. }) = client.events().try_recv() else { unreachable!() };
//! let config = LinkConditionerConfig { latency: Duration::from_millis(50), ..Default::default() };
//! let conditioned = ConditionedLink::new(link, config, true);
//!
//! let start = Instant::now();
//! conditioned.poll(start);
//! conditioned.link().send(b"hello".to_vec()).unwrap();
//! conditioned.poll(start + Duration::from_millis(49));
//! assert!(matches!(server.events().try_recv(), Ok(IoEvent::Opened { .. })));
//! assert!(server.events().try_recv().is_err(), "still on the wire");
//! conditioned.poll(start + Duration::from_millis(50));
//! assert!(matches!(server.events().try_recv(), Ok(IoEvent::Frame { .. })));
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::{ConnectionLink, Link, LinkError};

/// What a [`ConditionedLink`] does to the frames sent through it.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConditionerConfig {
    /// Added to every frame's delivery (one way). Default 0.
    pub latency: Duration,
    /// A uniformly random extra delay in `0..=jitter` per frame. On a
    /// reliable link a frame is never delivered before the one sent before
    /// it (jitter never reorders). Default 0.
    pub jitter: Duration,
    /// Bytes per second the link carries; frames queue behind each other.
    /// `None` (default) is unlimited.
    pub bandwidth_bytes_per_sec: Option<u64>,
    /// Probability that a frame is dropped (unreliable links only). Default 0.
    pub loss: f64,
    /// Probability that a frame is delivered twice (unreliable links only).
    /// Default 0.
    pub duplication: f64,
    /// Seed of the schedule: the same seed and the same sends at the same
    /// times give the same deliveries. Default 0.
    pub seed: u64,
}

impl Default for LinkConditionerConfig {
    fn default() -> Self {
        LinkConditionerConfig {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            bandwidth_bytes_per_sec: None,
            loss: 0.0,
            duplication: 0.0,
            seed: 0,
        }
    }
}

struct State {
    rng: StdRng,
    /// The time of the latest poll; sends are stamped with it.
    now: Option<Instant>,
    /// Frames on the wire with their delivery times, in delivery order for a
    /// reliable link.
    queue: VecDeque<(Instant, Vec<u8>)>,
    queued_bytes: usize,
    /// When the bandwidth-limited wire is free for the next frame.
    wire_free_at: Option<Instant>,
    /// The latest delivery time scheduled (reliable links never go below it).
    last_delivery: Option<Instant>,
    close_requested: bool,
}

/// The [`Link`] a [`ConditionedLink`] hands out: sends go through the
/// conditioner's schedule.
struct Conditioner {
    inner: ConnectionLink,
    config: LinkConditionerConfig,
    reliable: bool,
    state: Mutex<State>,
}

/// A link conditioner in front of one connection's link.
///
/// [`link`](Self::link) is the [`ConnectionLink`] to send through (same id
/// as the inner one); [`poll`](Self::poll) must be called with the current
/// time (each tick) to move frames on.
#[derive(Clone)]
pub struct ConditionedLink {
    conditioner: Arc<Conditioner>,
    link: ConnectionLink,
}

impl std::fmt::Debug for ConditionedLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConditionedLink")
            .field("link", &self.link)
            .field("config", &self.conditioner.config)
            .finish()
    }
}

impl ConditionedLink {
    /// Conditions `inner`. `reliable` says whether the transport promises
    /// reliable ordered delivery (WebSocket and memory do): then frames are
    /// never dropped, duplicated or reordered, whatever `config` says.
    pub fn new(inner: ConnectionLink, config: LinkConditionerConfig, reliable: bool) -> Self {
        let state = State {
            rng: StdRng::seed_from_u64(config.seed),
            now: None,
            queue: VecDeque::new(),
            queued_bytes: 0,
            wire_free_at: None,
            last_delivery: None,
            close_requested: false,
        };
        let id = inner.id();
        let conditioner = Arc::new(Conditioner {
            inner,
            config,
            reliable,
            state: Mutex::new(state),
        });
        let link = ConnectionLink::new(id, Arc::clone(&conditioner) as Arc<dyn Link>);
        ConditionedLink { conditioner, link }
    }

    /// The link to send through.
    pub fn link(&self) -> &ConnectionLink {
        &self.link
    }

    /// Advances the conditioner's clock to `now` and hands the inner link
    /// every frame due by then; returns how many. A frame the inner link
    /// refuses is dropped (the inner link reports its own state).
    pub fn poll(&self, now: Instant) -> usize {
        let conditioner = &self.conditioner;
        let mut due = Vec::new();
        let close = {
            let mut state = conditioner.lock();
            state.now = Some(state.now.map_or(now, |t| t.max(now)));
            loop {
                let ready = match state.queue.front() {
                    Some((at, _)) => *at <= now,
                    None => false,
                };
                if !ready {
                    break;
                }
                if let Some((_, frame)) = state.queue.pop_front() {
                    state.queued_bytes -= frame.len();
                    due.push(frame);
                }
            }
            state.close_requested && state.queue.is_empty()
        };
        let released = due.len();
        for frame in due {
            let _ = conditioner.inner.send(frame);
        }
        if close {
            conditioner.inner.close();
        }
        released
    }
}

impl Conditioner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When a frame of `len` bytes sent at `sent` arrives.
    fn schedule(&self, state: &mut State, sent: Instant, len: usize) -> Instant {
        let config = &self.config;
        let mut on_wire = sent;
        if let Some(rate) = config.bandwidth_bytes_per_sec.filter(|r| *r > 0) {
            let start = state.wire_free_at.map_or(sent, |free| free.max(sent));
            let transmit = Duration::from_secs_f64(len as f64 / rate as f64);
            on_wire = start + transmit;
            state.wire_free_at = Some(on_wire);
        }
        let jitter = if config.jitter.is_zero() {
            Duration::ZERO
        } else {
            let nanos = u64::try_from(config.jitter.as_nanos()).unwrap_or(u64::MAX);
            Duration::from_nanos(state.rng.random_range(0..=nanos))
        };
        let mut at = on_wire + config.latency + jitter;
        if self.reliable {
            if let Some(last) = state.last_delivery {
                at = at.max(last);
            }
            state.last_delivery = Some(at);
        }
        at
    }

    fn enqueue(state: &mut State, at: Instant, frame: Vec<u8>) {
        state.queued_bytes += frame.len();
        // Reliable schedules are monotonic, so this is a push to the back;
        // unreliable ones may overtake.
        let index = state.queue.partition_point(|(t, _)| *t <= at);
        state.queue.insert(index, (at, frame));
    }
}

impl Drop for Conditioner {
    fn drop(&mut self) {
        // Nobody will poll any more: what is still on the wire goes out now
        // (a goodbye DISCONNECT must not be lost), and a close waiting for it
        // must not leave the inner connection open.
        let (frames, close) = {
            let mut state = self.lock();
            let frames: Vec<Vec<u8>> = state.queue.drain(..).map(|(_, f)| f).collect();
            (frames, state.close_requested)
        };
        for frame in frames {
            let _ = self.inner.send(frame);
        }
        if close {
            self.inner.close();
        }
    }
}

impl Link for Conditioner {
    fn send(&self, frame: Vec<u8>) -> Result<(), LinkError> {
        let mut state = self.lock();
        if state.close_requested {
            return Err(LinkError::Closed);
        }
        let Some(sent) = state.now else {
            // Not polled yet: no clock to schedule on, pass straight through.
            drop(state);
            return self.inner.send(frame);
        };
        if !self.reliable {
            let (loss, duplication) = (self.config.loss, self.config.duplication);
            if loss > 0.0 && state.rng.random_bool(loss.min(1.0)) {
                return Ok(());
            }
            if duplication > 0.0 && state.rng.random_bool(duplication.min(1.0)) {
                let at = self.schedule(&mut state, sent, frame.len());
                Self::enqueue(&mut state, at, frame.clone());
            }
        }
        let at = self.schedule(&mut state, sent, frame.len());
        Self::enqueue(&mut state, at, frame);
        Ok(())
    }

    fn close(&self) {
        let empty = {
            let mut state = self.lock();
            state.close_requested = true;
            state.queue.is_empty()
        };
        // Otherwise the last poll that empties the queue closes.
        if empty {
            self.inner.close();
        }
    }

    fn frame_consumed(&self) {
        self.inner.frame_consumed();
    }

    fn backlog_bytes(&self) -> usize {
        self.lock().queued_bytes + self.inner.backlog_bytes()
    }

    fn mark_authenticated(&self) {
        self.inner.mark_authenticated();
    }

    fn kind(&self) -> &'static str {
        "conditioned"
    }
}
