//! Replay protection for packet counters.
//!
//! Every sealed packet carries the sender's per-direction 64-bit counter as its
//! message id (and AEAD nonce). The receiver keeps a [`ReplayGuard`]:
//!
//! * [`ReplayGuard::Strict`] (the default, for ordered transports such as
//!   WebSocket): the counter must be exactly the next one expected. Anything
//!   else — a duplicate, a gap, a reordering — is rejected.
//! * [`ReplayGuard::Window`] (for resumed sessions and datagram transports): a
//!   sliding bitmap of the last `size` counters accepts each counter at most
//!   once, in any order, as long as it is not older than `highest - size + 1`.
//!
//! Both are used in two steps so that the window changes only after a packet
//! authenticates: [`ReplayGuard::check`] (cheap, no mutation, run before
//! decryption) and [`ReplayGuard::commit`] (run after the AEAD tag verified).

use thiserror::Error;

/// The default sliding-window size in counters.
pub const DEFAULT_WINDOW: u64 = 1024;
/// The largest window size accepted by [`ReplayWindow::new`].
pub const MAX_WINDOW: u64 = 1 << 16;

/// Why a counter was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// Strict mode: the counter is not the next expected one.
    #[error("expected counter {expected}, got {got}")]
    OutOfOrder {
        /// The counter the guard expected.
        expected: u64,
        /// The counter received.
        got: u64,
    },
    /// Window mode: this counter was already accepted.
    #[error("counter {0} already seen")]
    Duplicate(u64),
    /// Window mode: the counter is older than the window.
    #[error("counter {counter} is older than the window (highest {highest}, size {size})")]
    TooOld {
        /// The counter received.
        counter: u64,
        /// The highest counter accepted so far.
        highest: u64,
        /// The window size.
        size: u64,
    },
    /// Strict mode: every counter has been used; the session must end.
    #[error("counter space exhausted")]
    Exhausted,
}

/// A sliding-window replay filter (RFC 6479 style bitmap ring).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    size: u64,
    highest: Option<u64>,
    /// Bit `c % size` is set when counter `c` (within the window) was accepted.
    bits: Vec<u64>,
}

impl ReplayWindow {
    /// A window remembering the last `size` counters. `size` is rounded up to a
    /// multiple of 64 and clamped to `64..=MAX_WINDOW`.
    pub fn new(size: u64) -> Self {
        let size = size.clamp(64, MAX_WINDOW).next_multiple_of(64);
        ReplayWindow {
            size,
            highest: None,
            bits: vec![0; (size / 64) as usize],
        }
    }

    /// The window size in counters.
    pub const fn size(&self) -> u64 {
        self.size
    }

    /// The highest counter accepted so far.
    pub const fn highest(&self) -> Option<u64> {
        self.highest
    }

    fn bit(&self, counter: u64) -> (usize, u64) {
        let slot = counter % self.size;
        ((slot / 64) as usize, 1u64 << (slot % 64))
    }

    /// Whether `counter` would be accepted. Does not change the window.
    pub fn check(&self, counter: u64) -> Result<(), ReplayError> {
        let Some(highest) = self.highest else {
            return Ok(());
        };
        if counter > highest {
            return Ok(());
        }
        if highest - counter >= self.size {
            return Err(ReplayError::TooOld {
                counter,
                highest,
                size: self.size,
            });
        }
        let (word, mask) = self.bit(counter);
        if self.bits[word] & mask != 0 {
            return Err(ReplayError::Duplicate(counter));
        }
        Ok(())
    }

    /// Records `counter` as accepted. Call only after [`check`](Self::check)
    /// succeeded **and** the packet authenticated.
    pub fn commit(&mut self, counter: u64) {
        match self.highest {
            Some(highest) if counter <= highest => {}
            Some(highest) => {
                let advance = counter - highest;
                if advance >= self.size {
                    self.bits.fill(0);
                } else {
                    for cleared in highest + 1..counter {
                        let (word, mask) = self.bit(cleared);
                        self.bits[word] &= !mask;
                    }
                }
                self.highest = Some(counter);
            }
            None => self.highest = Some(counter),
        }
        if self.highest.is_some_and(|h| h - counter < self.size) {
            let (word, mask) = self.bit(counter);
            self.bits[word] |= mask;
        }
    }
}

/// How a receiver guards against replayed packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayGuard {
    /// Exactly the next counter (ordered transports).
    Strict {
        /// The next counter expected.
        next: u64,
    },
    /// A sliding window (unordered transports, resumed sessions).
    Window(ReplayWindow),
}

/// Which [`ReplayGuard`] a session uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplayMode {
    /// Require exactly the next counter (the default; right for WebSocket).
    #[default]
    Strict,
    /// Accept each counter once within a window of this many counters.
    Window(u64),
}

impl ReplayGuard {
    /// A guard for `mode`, expecting counter `first` next.
    pub fn new(mode: ReplayMode, first: u64) -> Self {
        match mode {
            ReplayMode::Strict => ReplayGuard::Strict { next: first },
            ReplayMode::Window(size) => ReplayGuard::Window(ReplayWindow::new(size)),
        }
    }

    /// Whether `counter` would be accepted; no state changes.
    pub fn check(&self, counter: u64) -> Result<(), ReplayError> {
        match self {
            ReplayGuard::Strict { next } if *next == u64::MAX => Err(ReplayError::Exhausted),
            ReplayGuard::Strict { next } if counter != *next => Err(ReplayError::OutOfOrder {
                expected: *next,
                got: counter,
            }),
            ReplayGuard::Strict { .. } => Ok(()),
            ReplayGuard::Window(window) => window.check(counter),
        }
    }

    /// Records an authenticated `counter` (after a successful [`check`](Self::check)).
    pub fn commit(&mut self, counter: u64) {
        match self {
            ReplayGuard::Strict { next } => *next = counter.saturating_add(1),
            ReplayGuard::Window(window) => window.commit(counter),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    /// The obviously-correct reference: remember everything.
    struct Reference {
        size: u64,
        seen: HashSet<u64>,
        highest: Option<u64>,
    }

    impl Reference {
        fn accepts(&self, counter: u64) -> bool {
            if self.seen.contains(&counter) {
                return false;
            }
            match self.highest {
                None => true,
                Some(h) => counter > h || h - counter < self.size,
            }
        }
        fn commit(&mut self, counter: u64) {
            self.seen.insert(counter);
            self.highest = Some(self.highest.map_or(counter, |h| h.max(counter)));
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Offer highest + delta (may step forward a lot).
        Forward(u64),
        /// Offer highest - delta.
        Back(u64),
        /// Offer an absolute counter (edges of u64).
        Absolute(u64),
        /// Check but do not commit (an unauthenticated packet).
        Unauthenticated(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..200).prop_map(Op::Forward),
            4 => (0u64..300).prop_map(Op::Back),
            1 => prop_oneof![Just(0u64), Just(1), Just(u64::MAX), Just(u64::MAX - 1), Just(u64::MAX - 64), any::<u64>()]
                .prop_map(Op::Absolute),
            1 => (0u64..100).prop_map(Op::Unauthenticated),
        ]
    }

    proptest! {
        #[test]
        fn window_matches_reference(size in prop_oneof![Just(64u64), Just(128), Just(1024)], start in prop_oneof![Just(0u64), Just(u64::MAX - 500), any::<u64>()], ops in proptest::collection::vec(op(), 1..400)) {
            let mut window = ReplayWindow::new(size);
            let mut reference = Reference { size: window.size(), seen: HashSet::new(), highest: None };
            let mut cursor = start;
            for op in ops {
                let (counter, authenticated) = match op {
                    Op::Forward(d) => (cursor.saturating_add(d), true),
                    Op::Back(d) => (cursor.saturating_sub(d), true),
                    Op::Absolute(c) => (c, true),
                    Op::Unauthenticated(d) => (cursor.saturating_add(d), false),
                };
                let expected = reference.accepts(counter);
                prop_assert_eq!(window.check(counter).is_ok(), expected, "counter {}", counter);
                if expected && authenticated {
                    window.commit(counter);
                    reference.commit(counter);
                    cursor = reference.highest.unwrap_or(cursor);
                }
            }
        }
    }

    #[test]
    fn window_edges() {
        let mut window = ReplayWindow::new(64);
        window.commit(u64::MAX);
        assert_eq!(
            window.check(u64::MAX),
            Err(ReplayError::Duplicate(u64::MAX))
        );
        assert!(window.check(u64::MAX - 63).is_ok());
        assert!(matches!(
            window.check(u64::MAX - 64),
            Err(ReplayError::TooOld { .. })
        ));
        assert!(matches!(window.check(0), Err(ReplayError::TooOld { .. })));

        let mut window = ReplayWindow::new(64);
        window.commit(0);
        assert_eq!(window.check(0), Err(ReplayError::Duplicate(0)));
        window.commit(1_000_000);
        assert!(matches!(window.check(0), Err(ReplayError::TooOld { .. })));
        assert!(window.check(999_999).is_ok());
    }

    #[test]
    fn huge_jump_cannot_lock_the_window() {
        // An authenticated peer can only jump forward; old counters become too old
        // but new ones keep working (no "locked" state).
        let mut window = ReplayWindow::new(64);
        window.commit(5);
        window.commit(u64::MAX - 1);
        assert!(window.check(u64::MAX).is_ok());
    }

    #[test]
    fn window_sizes_are_normalised() {
        assert_eq!(ReplayWindow::new(0).size(), 64);
        assert_eq!(ReplayWindow::new(65).size(), 128);
        assert_eq!(ReplayWindow::new(u64::MAX).size(), MAX_WINDOW);
    }

    #[test]
    fn strict_requires_next() {
        let mut guard = ReplayGuard::new(ReplayMode::Strict, 0);
        assert!(guard.check(0).is_ok());
        guard.commit(0);
        assert_eq!(
            guard.check(0),
            Err(ReplayError::OutOfOrder {
                expected: 1,
                got: 0
            })
        );
        assert_eq!(
            guard.check(2),
            Err(ReplayError::OutOfOrder {
                expected: 1,
                got: 2
            })
        );
        // An unauthenticated packet that passed the check changes nothing.
        assert!(guard.check(1).is_ok());
        assert!(guard.check(1).is_ok());
        guard.commit(1);
        assert!(guard.check(2).is_ok());

        let mut edge = ReplayGuard::Strict { next: u64::MAX - 1 };
        assert!(edge.check(u64::MAX - 1).is_ok());
        edge.commit(u64::MAX - 1);
        assert_eq!(edge.check(u64::MAX), Err(ReplayError::Exhausted));
    }
}
