//! Receive, rate-limit and deliver: the `FixedPreUpdate` half of the data flow.

use bevy_ecs::prelude::*;

use super::MokoshServer;
use super::components::{AuthenticatedPackets, ClientConnection, NetSession};
use super::lifecycle::{
    apply_auth_results, kick_requested, open_connection, process_session_events,
};
use crate::io::{CloseCause, ConnectionId, IoEvent};
use crate::metrics::Rejection;
use crate::protocol::{DisconnectReason, PacketError};
use crate::shared::{now, now_from};
use bevy_time::{Real, Time};

/// Which rejection counter a packet error bumps (the mapping lives in
/// [`Rejection::for_packet_error`]).
pub fn rejection_for(error: &PacketError) -> Option<Rejection> {
    Rejection::for_packet_error(error)
}

pub(super) fn receive_system(world: &mut World) {
    let now = now(world);
    world.resource_scope::<MokoshServer, _>(|world, mut server| {
        let events: Vec<IoEvent> = match &server.endpoint {
            Some(endpoint) => endpoint.events().try_iter().collect(),
            None => return,
        };
        let cap = server.config.handshakes_per_tick.max(1);
        let mut hellos = 0;
        // Hellos held back in earlier ticks go first, in arrival order.
        let held = std::mem::take(&mut server.deferred_hellos);
        for (id, frame) in held {
            if !server.connections.contains_key(&id) {
                continue; // closed while it waited
            }
            if hellos < cap {
                hellos += 1;
                receive_frame(world, &mut server, now, id, &frame);
            } else {
                server.deferred_hellos.push_back((id, frame));
            }
        }
        for event in events {
            let _span =
                tracing::debug_span!("mokosh_connection", connection = event.connection().0)
                    .entered();
            match event {
                IoEvent::Opened { id, remote, link } => {
                    open_connection(world, &mut server, now, id, remote, link);
                }
                IoEvent::Frame { id, frame } => {
                    let Some(&entity) = server.connections.get(&id) else {
                        continue;
                    };
                    server.metrics.bytes_in(frame.len() as u64);
                    let awaits_hello = world
                        .get::<NetSession>(entity)
                        .is_some_and(|session| session.0.awaits_hello());
                    if awaits_hello {
                        if server.deferred_hellos.iter().any(|(held, _)| *held == id) {
                            refuse_second_frame(world, &mut server, id, entity);
                            continue;
                        }
                        if hellos >= cap && frame.len() <= MAX_HELLO_FRAME {
                            // Its inbound credit stays taken until then.
                            server.counters.hello_deferred();
                            server.deferred_hellos.push_back((id, frame));
                            continue;
                        }
                        hellos += 1;
                    }
                    receive_frame(world, &mut server, now, id, &frame);
                }
                IoEvent::Closed { id, cause } => {
                    let Some(&entity) = server.connections.get(&id) else {
                        server.closing.remove(&id);
                        continue;
                    };
                    match cause {
                        CloseCause::Oversized => server.metrics.reject(Rejection::Oversized),
                        CloseCause::ProtocolError(_) => server.metrics.reject(Rejection::Malformed),
                        _ => {}
                    }
                    // What arrived before the close (often the peer's own
                    // DISCONNECT) still counts: budget and deliver it first.
                    let pending = world
                        .get_mut::<AuthenticatedPackets>(entity)
                        .map(|mut packets| std::mem::take(&mut packets.0))
                        .unwrap_or_default();
                    for packet in pending {
                        let Some(mut session) = world.get_mut::<NetSession>(entity) else {
                            break;
                        };
                        let result = session
                            .0
                            .admit(now, &packet)
                            .and_then(|()| session.0.deliver(now, packet));
                        if let Err(error) = result {
                            count_rejection(&server, id, &error);
                        }
                    }
                    if let Some(mut session) = world.get_mut::<NetSession>(entity) {
                        // The transport went away under a live session.
                        session.0.disconnect(
                            DisconnectReason::ConnectionLost,
                            format!("transport closed: {cause:?}"),
                        );
                    }
                    process_session_events(world, &mut server, entity);
                    // Closing the session marked the connection as closing, but
                    // the transport has already reported its end.
                    server.closing.remove(&id);
                }
            }
        }
        apply_auth_results(world, &mut server, now);
    });
    kick_requested(world);
}

/// The largest frame that can be a valid hello; a larger one is refused
/// cheaply (before any cryptography) and never waits for a later tick.
const MAX_HELLO_FRAME: usize =
    crate::protocol::handshake::MAX_HANDSHAKE_BODY + crate::protocol::envelope::MAX_HEADER_LEN;

/// Verifies, decrypts and replay-checks one frame of connection `id`
/// ([`Session::open_frame`](crate::protocol::Session::open_frame)), returns its
/// inbound credit, and queues the packets for the rate limiter.
fn receive_frame(
    world: &mut World,
    server: &mut MokoshServer,
    now: std::time::Instant,
    id: ConnectionId,
    frame: &[u8],
) {
    let Some(&entity) = server.connections.get(&id) else {
        return;
    };
    // Authenticate and replay-check; rate limiting and delivery are the next
    // two system sets.
    let result = match world.get_mut::<NetSession>(entity) {
        Some(mut session) => session.0.open_frame(now, frame),
        None => return,
    };
    if let Some(connection) = world.get::<ClientConnection>(entity) {
        connection.link.frame_consumed();
    }
    match result {
        Ok(opened) => {
            if let Some(mut packets) = world.get_mut::<AuthenticatedPackets>(entity) {
                packets.0.extend(opened);
            }
        }
        Err(error) => count_rejection(server, id, &error),
    }
    process_session_events(world, server, entity);
}

/// A client whose hello is still waiting for a tick sent another frame: an
/// honest client waits for the server's answer, so this is a violation.
fn refuse_second_frame(
    world: &mut World,
    server: &mut MokoshServer,
    id: ConnectionId,
    entity: Entity,
) {
    tracing::debug!(connection = id.0, "frame before the hello was answered");
    server.metrics.reject(Rejection::ProtocolViolation);
    if let Some(connection) = world.get::<ClientConnection>(entity) {
        connection.link.frame_consumed();
    }
    if let Some(mut session) = world.get_mut::<NetSession>(entity) {
        session.0.disconnect(
            DisconnectReason::ProtocolViolation,
            "frame before the hello was answered",
        );
    }
    process_session_events(world, server, entity);
}

/// Counts a rejected packet; logs at debug so hostile input cannot flood logs.
pub(super) fn count_rejection(
    server: &MokoshServer,
    connection: ConnectionId,
    error: &PacketError,
) {
    tracing::debug!(connection = connection.0, %error, "packet rejected");
    if let Some(rejection) = Rejection::for_packet_error(error) {
        server.metrics.reject(rejection);
    }
}

/// `RateLimit` set: charges every authenticated packet to its sender's
/// message and byte budgets; packets over budget are dropped here.
pub(super) fn rate_limit_system(
    server: Res<MokoshServer>,
    time: Option<Res<Time<Real>>>,
    mut connections: Query<(
        &ClientConnection,
        &mut NetSession,
        &mut AuthenticatedPackets,
    )>,
) {
    let now = now_from(time.as_deref());
    for (connection, mut session, mut packets) in &mut connections {
        packets
            .0
            .retain(|packet| match session.0.admit(now, packet) {
                Ok(()) => true,
                Err(error) => {
                    count_rejection(&server, connection.connection, &error);
                    false
                }
            });
    }
}

/// `Deliver` set: acts on admitted packets (keepalive, disconnects) and turns
/// application messages into inbox entries for the typed dispatchers.
pub(super) fn deliver_system(world: &mut World) {
    let now = now(world);
    world.resource_scope::<MokoshServer, _>(|world, mut server| {
        let entities: Vec<(ConnectionId, Entity)> = server
            .connections
            .iter()
            .map(|(id, entity)| (*id, *entity))
            .collect();
        for (id, entity) in entities {
            let packets = match world.get_mut::<AuthenticatedPackets>(entity) {
                Some(mut packets) if !packets.0.is_empty() => std::mem::take(&mut packets.0),
                _ => continue,
            };
            for packet in packets {
                let Some(mut session) = world.get_mut::<NetSession>(entity) else {
                    break;
                };
                if let Err(error) = session.0.deliver(now, packet) {
                    count_rejection(&server, id, &error);
                }
            }
            process_session_events(world, &mut server, entity);
        }
    });
}

// The harness needs both plugins.
#[cfg(all(test, feature = "client"))]
mod tests {
    use crate::protocol::KeyPair;
    use crate::server::MokoshServer;
    use crate::testing::{TestNetwork, server_app};

    fn server(network: &TestNetwork) -> &MokoshServer {
        network.server.world().resource::<MokoshServer>()
    }

    /// A connection its peer closes (no DISCONNECT, the transport reports
    /// `Closed` first) must not stay in the set of connections whose close
    /// the server still waits for: nothing will report it again, so the set
    /// would grow by one per such connection and shutdown would wait out
    /// its whole goodbye timeout.
    #[test]
    fn a_connection_closed_by_its_peer_is_not_left_closing() {
        let keypair = KeyPair::generate().expect("key pair");
        let mut network = TestNetwork::new(server_app(keypair, |_| {}), Vec::new());
        let listener = network.listener();
        for _ in 0..3 {
            let endpoint = listener.connect();
            assert!(network.run_until(10, |network| server(network).connections.len() == 1));
            drop(endpoint);
            assert!(network.run_until(10, |network| server(network).connections.is_empty()));
        }
        network.step();
        assert_eq!(server(&network).closing.len(), 0);
    }
}
