//! Messages and helpers shared by the examples (not an example itself).
#![allow(dead_code)] // each example uses a different subset

use std::path::PathBuf;
use std::time::Duration;

use mokosh::GameMessage;
use serde::{Deserialize, Serialize};

/// One frame of player input (client → server).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 100]
pub(crate) struct PlayerInput {
    /// Client-side input counter (for acknowledgement).
    pub(crate) sequence: u32,
    /// Desired movement; the server clamps it to length 1.
    pub(crate) direction: (f32, f32),
    /// Button bit set.
    pub(crate) buttons: u8,
}

/// The authoritative state of one player.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, mokosh::Schema)]
pub(crate) struct PlayerState {
    /// The owning client's id.
    pub(crate) client_id: u64,
    /// Position in world units.
    pub(crate) position: (f32, f32),
    /// Last input the server applied for this player.
    pub(crate) last_input: u32,
}

/// The world as the server sees it (server → clients), sent 20 times a second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 101]
pub(crate) struct WorldSnapshot {
    /// Server tick.
    pub(crate) tick: u64,
    /// Every connected player.
    pub(crate) players: Vec<PlayerState>,
}

/// A line of chat, relayed to everyone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 102]
pub(crate) struct Chat {
    /// Who said it (filled in by the server).
    pub(crate) from: u64,
    /// What was said.
    pub(crate) text: String,
}

/// Where `test_server` saves its public key and `test_client` reads it.
pub(crate) fn default_key_dir() -> PathBuf {
    PathBuf::from(".mokosh")
}

/// A tiny command-line parser: `--name value` pairs and `--flag`s.
pub(crate) struct Args {
    pairs: Vec<(String, Option<String>)>,
}

impl Args {
    /// Parses the process arguments.
    pub(crate) fn parse() -> Self {
        let mut pairs = Vec::new();
        let mut args = std::env::args().skip(1).peekable();
        while let Some(arg) = args.next() {
            let Some(name) = arg.strip_prefix("--") else {
                eprintln!("unexpected argument {arg:?}");
                std::process::exit(2);
            };
            let value = match args.peek() {
                Some(next) if !next.starts_with("--") => args.next(),
                _ => None,
            };
            pairs.push((name.to_owned(), value));
        }
        Args { pairs }
    }

    /// The value of `--name`, if given.
    pub(crate) fn value(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Whether `--name` was given.
    pub(crate) fn flag(&self, name: &str) -> bool {
        self.pairs.iter().any(|(n, _)| n == name)
    }

    /// `--latency-ms N` and `--jitter-ms N` as a link conditioner on this
    /// side's outbound link (`None` when neither is given).
    pub(crate) fn link_conditioner(
        &self,
    ) -> Option<mokosh::io::conditioner::LinkConditionerConfig> {
        let millis = |name: &str| {
            self.value(name).map(|s| {
                Duration::from_millis(s.parse().unwrap_or_else(|_| {
                    eprintln!("--{name} takes a whole number of milliseconds");
                    std::process::exit(2)
                }))
            })
        };
        let (latency, jitter) = (millis("latency-ms"), millis("jitter-ms"));
        if latency.is_none() && jitter.is_none() {
            return None;
        }
        Some(mokosh::io::conditioner::LinkConditionerConfig {
            latency: latency.unwrap_or_default(),
            jitter: jitter.unwrap_or_default(),
            ..Default::default()
        })
    }

    /// `--seconds N` as a duration.
    pub(crate) fn seconds(&self) -> Option<Duration> {
        self.value("seconds").map(|s| {
            Duration::from_secs_f64(s.parse().unwrap_or_else(|_| {
                eprintln!("--seconds takes a number");
                std::process::exit(2)
            }))
        })
    }
}

/// Logs to stderr; `RUST_LOG` overrides the default `info` level. Colours
/// only when stderr is a terminal (and `NO_COLOR` is unset), so logs written
/// to a file or a pipe carry no ANSI escape codes.
pub(crate) fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .try_init();
}

/// Prints `message` and exits with status 2 (a usage or setup error).
pub(crate) fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(2)
}

/// Writes a secret file readable only by its owner (on Unix).
pub(crate) fn write_private(path: &std::path::Path, contents: &str) {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = options
        .open(path)
        .and_then(|mut file| file.write_all(contents.as_bytes()));
    if let Err(error) = result {
        fail(&format!("{}: {error}", path.display()));
    }
}

/// A headless app on the real clock whose fixed schedules (where the Mokosh
/// systems run) tick at `hz`. Add plugins, then call [`started`].
pub(crate) fn realtime_app(hz: f64) -> bevy_app::App {
    let mut app = bevy_app::App::new();
    app.add_plugins(bevy_time::TimePlugin);
    app.insert_resource(bevy_time::Time::<bevy_time::Fixed>::from_hz(hz));
    app
}

/// Finishes building `app` so it can be stepped with `update()` by hand
/// (what `App::run` does before its first update).
pub(crate) fn started(mut app: bevy_app::App) -> bevy_app::App {
    app.finish();
    app.cleanup();
    app
}

/// Updates every app in turn (about once a millisecond) until `done` holds or
/// `timeout` passes. Returns whether `done` held.
pub(crate) fn step_until(
    apps: &mut [bevy_app::App],
    timeout: Duration,
    mut done: impl FnMut(&mut [bevy_app::App]) -> bool,
) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        for app in apps.iter_mut() {
            app.update();
        }
        if done(apps) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// Milliseconds, for printing.
pub(crate) fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Collects every message of type `M` an app sees into [`Seen<M>`] (add with
/// [`observe`]).
#[derive(bevy_ecs::prelude::Resource)]
pub(crate) struct Seen<M: Send + Sync + 'static>(pub(crate) Vec<M>);

fn collect<M: bevy_ecs::message::Message + Clone>(
    mut reader: bevy_ecs::prelude::MessageReader<M>,
    mut seen: bevy_ecs::prelude::ResMut<Seen<M>>,
) {
    seen.0.extend(reader.read().cloned());
}

/// Records every `M` the app sees (in `FixedUpdate`, where Mokosh delivers).
pub(crate) fn observe<M: bevy_ecs::message::Message + Clone>(app: &mut bevy_app::App) {
    app.insert_resource(Seen::<M>(Vec::new()));
    app.add_systems(bevy_app::FixedUpdate, collect::<M>);
}

/// What `observe::<M>` recorded so far.
pub(crate) fn seen<M: bevy_ecs::message::Message + Clone>(app: &bevy_app::App) -> &[M] {
    &app.world().resource::<Seen<M>>().0
}
