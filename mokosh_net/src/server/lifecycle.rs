//! Connection lifecycle: open, authentication, session events, close, kicks.
//!
//! A connection's entity lives from the transport's `Opened` event to the end
//! of the `Flush` set of the tick it closes in. While the client is
//! authenticated and connected it carries [`Connected`]; the marker is removed
//! (entity still alive, so `On<Remove<Connected>>` observers can read it)
//! when the connection closes, before [`ClientDisconnected`] is written.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bevy_ecs::prelude::*;

use super::MokoshServer;
use super::WhenIdentityFull;
use super::authentication::AuthOutcome;
use super::components::{
    AuthenticatedIdentity, AuthenticatedPackets, ClientConnected, ClientConnection,
    ClientDisconnected, Connected, ConnectionRejected, ConnectionRtt, KickClient, NetSession,
    TrafficStats,
};
use super::messages::{Pending, ServerInbox};
use crate::auth::AuthRequest;
use crate::io::{ConnectionId, ConnectionLink};
use crate::protocol::{DisconnectReason, Initiator, Session, SessionEvent};
use crate::shared::{ClientId, now};

/// Connects and disconnects since the last INFO summary.
#[derive(Debug, Default)]
pub(super) struct ConnectionChurn {
    connected: u64,
    disconnected: u64,
    since: Option<Instant>,
}

impl ConnectionChurn {
    /// Logs "X connected, Y disconnected" at INFO when `interval` has passed
    /// since the last summary and anything happened.
    pub(super) fn summarize(&mut self, now: Instant, interval: Duration, clients: usize) {
        let since = *self.since.get_or_insert(now);
        if now.saturating_duration_since(since) < interval {
            return;
        }
        if self.connected + self.disconnected > 0 {
            tracing::info!(
                connected = self.connected,
                disconnected = self.disconnected,
                clients,
                "{} connected, {} disconnected in the last {:?}",
                self.connected,
                self.disconnected,
                now.saturating_duration_since(since),
            );
        }
        *self = ConnectionChurn {
            since: Some(now),
            ..ConnectionChurn::default()
        };
    }
}

pub(super) fn kick_requested(world: &mut World) {
    let kicks: Vec<KickClient> = world
        .resource_mut::<Messages<KickClient>>()
        .drain()
        .collect();
    if kicks.is_empty() {
        return;
    }
    world.resource_scope::<MokoshServer, _>(|world, mut server| {
        for kick in kicks {
            if let Some(&entity) = server.clients.get(&kick.client_id) {
                if let Some(mut session) = world.get_mut::<NetSession>(entity) {
                    session.0.disconnect(kick.reason, kick.detail);
                }
                process_session_events(world, &mut server, entity);
            }
        }
    });
}

pub(super) fn open_connection(
    world: &mut World,
    server: &mut MokoshServer,
    now: Instant,
    id: ConnectionId,
    remote: Option<SocketAddr>,
    link: ConnectionLink,
) {
    let Some(protocol) = server.protocol.clone() else {
        link.close();
        return;
    };
    let client_id = server.next_client_id;
    server.next_client_id += 1;
    let session = Session::server(&protocol, client_id, now);
    let conditioner = server.config.link_conditioner.clone().map(|mut config| {
        config.seed = config.seed.wrapping_add(id.0);
        let conditioned = crate::io::conditioner::ConditionedLink::new(link.clone(), config, true);
        conditioned.poll(now);
        conditioned
    });
    let link = conditioner
        .as_ref()
        .map_or(link, |conditioned| conditioned.link().clone());
    let entity = world
        .spawn((
            ClientConnection {
                connection: id,
                remote,
                link,
                over_budget_ticks: 0,
                conditioner,
            },
            NetSession(session),
            AuthenticatedPackets::default(),
            ConnectionRtt::default(),
            TrafficStats::default(),
        ))
        .id();
    server.connections.insert(id, entity);
    server.metrics.connection_opened();
    tracing::debug!(connection = id.0, ?remote, client_id, "connection opened");
}

/// Drains a session's events into Bevy messages, auth requests and cleanup.
pub(super) fn process_session_events(world: &mut World, server: &mut MokoshServer, entity: Entity) {
    while let Some(event) = world
        .get_mut::<NetSession>(entity)
        .and_then(|mut session| session.0.poll_event())
    {
        match event {
            SessionEvent::AuthRequested { token } => start_auth(world, server, entity, token),
            SessionEvent::Connected { client_id, .. } => {
                let identity = world
                    .get::<AuthenticatedIdentity>(entity)
                    .map(|identity| identity.0.clone());
                let client_id = ClientId(client_id);
                if let Some(connection) = world.get::<ClientConnection>(entity) {
                    // No longer counts against the transport's cap on
                    // connections still authenticating.
                    connection.link.mark_authenticated();
                }
                world.entity_mut(entity).insert((client_id, Connected));
                server.clients.insert(client_id, entity);
                server.churn.connected += 1;
                if let Some(identity) = identity {
                    tracing::debug!(%client_id, user = %identity.user_id, "client connected");
                    world.write_message(ClientConnected {
                        entity,
                        client_id,
                        identity,
                    });
                }
            }
            SessionEvent::Message(message) => {
                server.metrics.message_in();
                let client_id = world
                    .get::<ClientId>(entity)
                    .copied()
                    .unwrap_or(ClientId(0));
                world
                    .resource_mut::<ServerInbox>()
                    .by_route
                    .entry(message.route_id)
                    .or_default()
                    .push(Pending {
                        entity,
                        client_id,
                        message,
                    });
            }
            SessionEvent::Disconnected {
                reason, initiator, ..
            } => {
                close_connection(world, server, entity, reason, initiator);
                return;
            }
        }
    }
}

/// Hands the token to the provider on the IO runtime (never on this thread).
fn start_auth(world: &mut World, server: &mut MokoshServer, entity: Entity, token: Vec<u8>) {
    let now = now(world);
    let Some(connection) = world.get::<ClientConnection>(entity) else {
        return;
    };
    let request = AuthRequest {
        client_id: world
            .get::<NetSession>(entity)
            .map_or(0, |session| session.0.client_id()),
        remote: connection.remote,
        token,
    };
    let connection_id = connection.connection;
    let started = server.authentications.start(
        &server.runtime,
        &server.counters,
        now,
        entity,
        connection_id,
        request,
    );
    if started.is_err() {
        tracing::debug!(
            connection = connection_id.0,
            "authentication refused: too many pending"
        );
        if let Some(mut session) = world.get_mut::<NetSession>(entity) {
            let _ = session.0.reject(
                DisconnectReason::ServerFull,
                "too many pending authentications",
            );
        }
    }
}

/// Applies the providers' answers that arrived, then refuses the clients
/// whose provider did not answer within the timeout.
pub(super) fn apply_auth_results(world: &mut World, server: &mut MokoshServer, now: Instant) {
    for outcome in server.authentications.finished() {
        apply_auth(world, server, now, outcome);
    }
    for (connection, entity) in server.authentications.expired(now) {
        server.counters.auth_timeout();
        tracing::debug!(connection = connection.0, "authentication timed out");
        if let Some(mut session) = world.get_mut::<NetSession>(entity) {
            let _ = session
                .0
                .reject(DisconnectReason::AuthFailed, "authentication timed out");
        }
        process_session_events(world, server, entity);
    }
}

fn apply_auth(world: &mut World, server: &mut MokoshServer, now: Instant, outcome: AuthOutcome) {
    // The connection may be gone, or its entity reused: check both.
    if server.connections.get(&outcome.connection) != Some(&outcome.entity) {
        return;
    }
    match outcome.result {
        Ok(identity) => {
            if admit_identity(world, server, outcome.entity, &identity.user_id) {
                world
                    .entity_mut(outcome.entity)
                    .insert(AuthenticatedIdentity(identity));
                if let Some(mut session) = world.get_mut::<NetSession>(outcome.entity) {
                    let _ = session.0.accept(now);
                }
            } else if let Some(mut session) = world.get_mut::<NetSession>(outcome.entity) {
                let _ = session.0.reject(
                    DisconnectReason::AuthFailed,
                    "session limit for this identity reached",
                );
            }
        }
        Err(error) => {
            tracing::debug!(connection = outcome.connection.0, %error, "authentication refused");
            if let Some(mut session) = world.get_mut::<NetSession>(outcome.entity) {
                let _ = session
                    .0
                    .reject(DisconnectReason::AuthFailed, error.to_string());
            }
        }
    }
    process_session_events(world, server, outcome.entity);
}

/// Applies [`SessionsPerIdentity`](super::SessionsPerIdentity) to a newly
/// authenticated `entity`; returns whether it may connect (and records it).
fn admit_identity(
    world: &mut World,
    server: &mut MokoshServer,
    entity: Entity,
    user_id: &str,
) -> bool {
    let limit = server.config.sessions_per_identity;
    let held = server.identities.get(user_id).map_or(0, Vec::len);
    if held >= limit.max.get() {
        match limit.when_full {
            WhenIdentityFull::RefuseNewest => {
                server.counters.identity_refused();
                tracing::debug!(user = user_id, "identity has its maximum of sessions");
                return false;
            }
            WhenIdentityFull::ReplaceOldest => {
                let excess = held + 1 - limit.max.get();
                let oldest: Vec<Entity> = server
                    .identities
                    .get_mut(user_id)
                    .map(|sessions| sessions.drain(..excess).collect())
                    .unwrap_or_default();
                for old in oldest {
                    server.counters.identity_replaced();
                    tracing::debug!(user = user_id, "session replaced by a newer one");
                    if let Some(mut session) = world.get_mut::<NetSession>(old) {
                        session.0.disconnect(
                            DisconnectReason::Kicked,
                            "replaced by a newer session of the same identity",
                        );
                    }
                    process_session_events(world, server, old);
                }
            }
        }
    }
    server
        .identities
        .entry(user_id.to_owned())
        .or_default()
        .push(entity);
    true
}

fn close_connection(
    world: &mut World,
    server: &mut MokoshServer,
    entity: Entity,
    reason: DisconnectReason,
    initiator: Initiator,
) {
    let Ok(mut entity_ref) = world.get_entity_mut(entity) else {
        return;
    };
    // Hand over the last frames (DISCONNECT or a refusal), then close.
    let session = entity_ref.take::<NetSession>();
    if let Some(connection) = entity_ref.get::<ClientConnection>() {
        if let Some(mut session) = session {
            while let Some(frame) = session.0.poll_transmit() {
                let len = frame.len() as u64;
                if connection.link.send(frame).is_err() {
                    break;
                }
                server.metrics.bytes_out(len);
            }
        }
        connection.link.close();
        let id = connection.connection;
        server.connections.remove(&id);
        server.closing.insert(id);
        if server.authentications.cancel(id) {
            server.counters.auth_aborted();
        }
    }
    if let Some(identity) = entity_ref.get::<AuthenticatedIdentity>()
        && let Some(sessions) = server.identities.get_mut(&identity.0.user_id)
    {
        sessions.retain(|&held| held != entity);
        if sessions.is_empty() {
            server.identities.remove(&identity.0.user_id);
        }
    }
    let client_id = entity_ref.get::<ClientId>().copied();
    let remote = entity_ref
        .get::<ClientConnection>()
        .and_then(|connection| connection.remote);
    // Observers of `On<Remove<Connected>>` still see the whole entity; it is
    // despawned at the end of this tick's `Flush`.
    entity_ref.remove::<Connected>();
    server.despawn.push(entity);
    // The one place a session's end is counted (`Rejection::for_disconnect`:
    // only this server's own timeouts, refusals and slow-consumer drops).
    server.metrics.session_closed(reason, initiator);
    if initiator == Initiator::Peer
        && matches!(
            reason,
            DisconnectReason::IdleTimeout | DisconnectReason::HandshakeTimeout
        )
    {
        server.counters.peer_timeout();
    }
    match client_id {
        Some(client_id) => {
            server.clients.remove(&client_id);
            server.churn.disconnected += 1;
            tracing::debug!(%client_id, %reason, ?initiator, "client disconnected");
            world.write_message(ClientDisconnected {
                entity,
                client_id,
                reason,
                initiator,
            });
        }
        None => {
            world.write_message(ConnectionRejected { remote, reason });
        }
    }
}

/// End of `Flush` (`FixedPostUpdate`): despawns the entities of connections
/// closed this tick, after game code had the tick to read their last
/// messages, and writes the periodic connection summary.
pub(super) fn despawn_closed_system(world: &mut World) {
    let now = now(world);
    let mut server = world.resource_mut::<MokoshServer>();
    let server = &mut *server;
    let clients = server.clients.len();
    server
        .churn
        .summarize(now, server.config.connection_log_interval, clients);
    let closed = std::mem::take(&mut server.despawn);
    for entity in closed {
        if let Ok(entity) = world.get_entity_mut(entity) {
            entity.despawn();
        }
    }
}
