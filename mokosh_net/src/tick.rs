//! The network tick and where the game's simulation runs.
//!
//! # The tick
//!
//! [`NetworkTick`] counts fixed steps. One system,
//! [`advance_network_tick`], in [`MokoshTickSystems::Advance`] at the start of
//! `FixedFirst`, adds one per fixed step, so every system of a step (receive,
//! simulation, send) sees the same value, the same way on the server and on
//! the client. Game code reads it instead of keeping its own counter. It
//! starts at 0 ("no step has run"); the first fixed step is tick 1.
//!
//! Every packet a session seals during a step carries that step's tick (the
//! envelope's optional tick field, see `docs/PROTOCOL.md`): the plugins stamp
//! each session with [`Session::set_tick`](crate::protocol::Session::set_tick)
//! before anything is sealed in the step. The receiver reads the sender's tick
//! as `FromClient::tick` / `FromServer::tick` (the sender's clock, not its
//! own).
//!
//! The counter is a `u32` that wraps (after about 2.3 years at 60 Hz). Compare
//! ticks with [`NetworkTick::is_newer_than`] and [`NetworkTick::steps_since`],
//! which treat the ticks as points on a circle and are correct as long as the
//! two ticks are less than 2³¹ steps apart; never with `<` on the raw value.
//!
//! # Schedules: where the simulation lives
//!
//! One fixed step runs these schedules in order (Bevy's `FixedMain`):
//!
//! | schedule | what runs there |
//! |----------|-----------------|
//! | `FixedFirst` | [`MokoshTickSystems::Advance`]: the tick moves on |
//! | `FixedPreUpdate` | network receive: IO channel drained, packets verified, replay-checked, rate-limited, typed `FromClient<M>` / `FromServer<M>` written |
//! | `FixedUpdate` | **the game's simulation**, and nothing of Mokosh's |
//! | `FixedPostUpdate` | network send: `ToClients<M>` / `ToServer<M>` sealed and handed to the IO layer |
//!
//! The simulation goes in `FixedUpdate`. Rollback (re-simulating past ticks
//! after a correction) re-runs only that schedule, once per tick to replay:
//!
//! ```
//! # use bevy_ecs::prelude::*;
//! # let mut world = World::new();
//! # world.add_schedule(Schedule::new(bevy_app::FixedUpdate));
//! # let ticks_to_replay = 3;
//! for _ in 0..ticks_to_replay {
//!     world.run_schedule(bevy_app::FixedUpdate);
//! }
//! ```
//!
//! Because the network sets and the tick advance live in the other fixed
//! schedules, a re-run neither drains the IO channel, nor sends, nor moves
//! [`NetworkTick`] (the `netcode_shape` integration test checks this). A
//! rollback that needs the tick being replayed sets it itself and restores it
//! afterwards.

use bevy_app::{App, FixedFirst, Plugin};
use bevy_ecs::prelude::*;

/// The current network tick: how many fixed steps have run. See the module
/// docs for when it advances and how to compare ticks.
#[derive(Resource, Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct NetworkTick(pub u32);

impl NetworkTick {
    /// The raw counter.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The tick `steps` fixed steps later (wrapping).
    #[must_use]
    pub const fn plus(self, steps: u32) -> Self {
        NetworkTick(self.0.wrapping_add(steps))
    }

    /// How many steps `self` is after `earlier`: negative when `earlier` is in
    /// fact later. Correct while the two are less than 2³¹ steps apart.
    pub const fn steps_since(self, earlier: NetworkTick) -> i32 {
        self.0.wrapping_sub(earlier.0) as i32
    }

    /// Whether `self` comes after `other`, across wrap-around (`0` is newer
    /// than `u32::MAX`).
    pub const fn is_newer_than(self, other: NetworkTick) -> bool {
        self.steps_since(other) > 0
    }
}

impl core::fmt::Display for NetworkTick {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "tick {}", self.0)
    }
}

/// The tick's system set.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MokoshTickSystems {
    /// `FixedFirst`, before anything else of Mokosh's: [`NetworkTick`] + 1.
    Advance,
}

/// Adds [`NetworkTick`] and its advance. Added by the server and client
/// plugins (once, whichever comes first); add it yourself only for an app
/// that has neither.
#[derive(Debug, Default)]
pub struct NetworkTickPlugin;

impl Plugin for NetworkTickPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<NetworkTick>().add_systems(
            FixedFirst,
            advance_network_tick.in_set(MokoshTickSystems::Advance),
        );
    }
}

/// Moves [`NetworkTick`] on by one. The only writer of the tick.
pub fn advance_network_tick(mut tick: ResMut<NetworkTick>) {
    *tick = tick.plus(1);
}

// Used by the server and client plugins (a `runtime`-only build has none).
#[cfg(any(feature = "server", feature = "client"))]
pub(crate) fn ensure_tick_plugin(app: &mut App) {
    if !app.is_plugin_added::<NetworkTickPlugin>() {
        app.add_plugins(NetworkTickPlugin);
    }
}

#[cfg(test)]
mod tests {
    use super::NetworkTick;

    #[test]
    fn comparisons_wrap_around() {
        let last = NetworkTick(u32::MAX);
        let first = last.plus(1);
        assert_eq!(first, NetworkTick(0));
        assert!(first.is_newer_than(last));
        assert!(!last.is_newer_than(first));
        assert_eq!(first.steps_since(last), 1);
        assert_eq!(last.steps_since(first), -1);
        assert!(!first.is_newer_than(first));
        assert_eq!(NetworkTick(10).steps_since(NetworkTick(4)), 6);
    }
}
