//! The link conditioner on virtual time, in front of an out-of-crate `Link`
//! (which also shows that a backend outside the crate plugs into the seam).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mokosh_net::io::conditioner::{ConditionedLink, LinkConditionerConfig};
use mokosh_net::io::{ConnectionId, ConnectionLink, Link, LinkError};

/// A backend that records what reaches it.
#[derive(Default)]
struct Recorder {
    frames: Mutex<Vec<Vec<u8>>>,
    closed: Mutex<bool>,
}

impl Link for Recorder {
    fn send(&self, frame: Vec<u8>) -> Result<(), LinkError> {
        self.frames.lock().unwrap().push(frame);
        Ok(())
    }
    fn close(&self) {
        *self.closed.lock().unwrap() = true;
    }
    fn frame_consumed(&self) {}
    fn backlog_bytes(&self) -> usize {
        0
    }
}

fn conditioned(config: LinkConditionerConfig, reliable: bool) -> (ConditionedLink, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let inner = ConnectionLink::new(ConnectionId(1), Arc::clone(&recorder) as Arc<dyn Link>);
    (ConditionedLink::new(inner, config, reliable), recorder)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Sends `count` numbered frames of `size` bytes at `start`, then polls every
/// millisecond for `for_ms`; returns (arrival offset in ms, frame number) in
/// arrival order.
fn run(
    config: LinkConditionerConfig,
    reliable: bool,
    count: u32,
    size: usize,
    for_ms: u64,
) -> Vec<(u64, u32)> {
    let (link, recorder) = conditioned(config, reliable);
    let start = Instant::now();
    link.poll(start);
    for n in 0..count {
        let mut frame = n.to_le_bytes().to_vec();
        frame.resize(size.max(4), 0);
        link.link().send(frame).unwrap();
    }
    let mut arrivals = Vec::new();
    for t in 0..=for_ms {
        link.poll(start + ms(t));
        for frame in recorder.frames.lock().unwrap().drain(..) {
            let n = u32::from_le_bytes(frame[..4].try_into().unwrap());
            arrivals.push((t, n));
        }
    }
    arrivals
}

#[test]
fn latency_is_honoured_to_within_one_poll() {
    let config = LinkConditionerConfig {
        latency: ms(80),
        ..Default::default()
    };
    let (link, recorder) = conditioned(config, true);
    let start = Instant::now();
    link.poll(start);
    link.link().send(vec![1]).unwrap();
    assert_eq!(link.poll(start + ms(79)), 0);
    assert!(recorder.frames.lock().unwrap().is_empty());
    assert_eq!(link.link().backlog_bytes(), 1);
    assert_eq!(link.poll(start + ms(80)), 1);
    assert_eq!(*recorder.frames.lock().unwrap(), vec![vec![1]]);
    assert_eq!(link.link().backlog_bytes(), 0);
    // Sent between polls: stamped with the last poll's time.
    link.link().send(vec![2]).unwrap();
    assert_eq!(link.poll(start + ms(159)), 0);
    assert_eq!(link.poll(start + ms(160)), 1);
}

#[test]
fn jitter_never_reorders_a_reliable_link() {
    let config = LinkConditionerConfig {
        latency: ms(10),
        jitter: ms(50),
        seed: 3,
        ..Default::default()
    };
    let arrivals = run(config, true, 200, 8, 200);
    assert_eq!(arrivals.len(), 200);
    let order: Vec<u32> = arrivals.iter().map(|(_, n)| *n).collect();
    assert_eq!(order, (0..200).collect::<Vec<_>>());
    // The jitter did delay frames (not all arrive at the bare latency) and
    // stayed within its bound.
    assert!(arrivals.iter().any(|(t, _)| *t > 10));
    assert!(arrivals.iter().all(|(t, _)| (10..=60).contains(t)));
}

#[test]
fn the_bandwidth_cap_limits_bytes_per_second() {
    let config = LinkConditionerConfig {
        bandwidth_bytes_per_sec: Some(1000),
        ..Default::default()
    };
    // 10 frames of 100 bytes = one second of wire time.
    let arrivals = run(config, true, 10, 100, 1200);
    assert_eq!(arrivals.len(), 10);
    for (i, (t, n)) in arrivals.iter().enumerate() {
        assert_eq!(*n, i as u32);
        // Frame i finishes its transmission at (i + 1) * 100 ms.
        assert_eq!(*t, (i as u64 + 1) * 100, "frame {i}");
    }
}

#[test]
fn the_same_seed_gives_the_same_schedule() {
    let config = |seed| LinkConditionerConfig {
        latency: ms(20),
        jitter: ms(40),
        loss: 0.2,
        duplication: 0.2,
        seed,
        ..Default::default()
    };
    let a = run(config(7), false, 100, 8, 100);
    let b = run(config(7), false, 100, 8, 100);
    let c = run(config(8), false, 100, 8, 100);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn loss_and_duplication_apply_only_to_unreliable_links() {
    let config = LinkConditionerConfig {
        loss: 0.3,
        duplication: 0.3,
        jitter: ms(30),
        seed: 11,
        ..Default::default()
    };
    let reliable = run(config.clone(), true, 300, 8, 100);
    assert_eq!(
        reliable.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        (0..300).collect::<Vec<_>>()
    );
    let unreliable = run(config, false, 300, 8, 100);
    let mut seen = std::collections::HashMap::new();
    for (_, n) in &unreliable {
        *seen.entry(*n).or_insert(0) += 1;
    }
    assert!(seen.len() < 300, "some frames were lost");
    assert!(seen.values().any(|&k| k > 1), "some frames were duplicated");
    let order: Vec<u32> = unreliable.iter().map(|(_, n)| *n).collect();
    assert!(
        order.windows(2).any(|w| w[0] > w[1]),
        "jitter reorders an unreliable link"
    );
}

#[test]
fn close_waits_for_the_frames_on_the_wire() {
    let config = LinkConditionerConfig {
        latency: ms(30),
        ..Default::default()
    };
    let (link, recorder) = conditioned(config, true);
    let start = Instant::now();
    link.poll(start);
    link.link().send(vec![9]).unwrap();
    link.link().close();
    assert_eq!(link.link().send(vec![10]), Err(LinkError::Closed));
    link.poll(start + ms(29));
    assert!(!*recorder.closed.lock().unwrap());
    link.poll(start + ms(30));
    assert_eq!(*recorder.frames.lock().unwrap(), vec![vec![9]]);
    assert!(*recorder.closed.lock().unwrap());
}

#[test]
fn dropping_the_conditioner_delivers_what_is_on_the_wire_then_closes() {
    let config = LinkConditionerConfig {
        latency: ms(500),
        ..Default::default()
    };
    let (link, recorder) = conditioned(config, true);
    link.poll(Instant::now());
    link.link().send(vec![1]).unwrap();
    link.link().send(vec![2]).unwrap();
    link.link().close();
    assert!(recorder.frames.lock().unwrap().is_empty());
    drop(link);
    assert_eq!(*recorder.frames.lock().unwrap(), vec![vec![1], vec![2]]);
    assert!(*recorder.closed.lock().unwrap());
}
