//! Connection lifecycle: open, authentication, session events, close, kicks.

use std::net::SocketAddr;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bevy_ecs::prelude::*;

use super::MokoshServer;
use super::components::{
    AuthenticatedIdentity, AuthenticatedPackets, ClientConnected, ClientConnection,
    ClientDisconnected, ConnectionRejected, ConnectionRtt, KickClient, NetSession, TrafficStats,
};
use super::messages::{Pending, ServerInbox};
use crate::auth::{AuthError, AuthRequest, Identity};
use crate::io::{ConnectionId, ConnectionLink};
use crate::metrics::Rejection;
use crate::protocol::{DisconnectReason, Initiator, Session, SessionEvent};
use crate::shared::ClientId;

pub(super) struct AuthOutcome {
    pub(super) entity: Entity,
    pub(super) connection: ConnectionId,
    pub(super) result: Result<Identity, AuthError>,
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
    let entity = world
        .spawn((
            ClientConnection {
                connection: id,
                remote,
                link,
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
                world.entity_mut(entity).insert(client_id);
                server.clients.insert(client_id, entity);
                if let Some(identity) = identity {
                    tracing::info!(%client_id, user = %identity.user_id, "client connected");
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

pub(super) fn start_auth(
    world: &mut World,
    server: &mut MokoshServer,
    entity: Entity,
    token: Vec<u8>,
) {
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
    let mut future = server.auth.authenticate(request);
    // Providers that answer at once (tokens, development) are applied in this
    // tick, deterministically; slow ones run on the IO runtime, off the loop.
    let mut context = Context::from_waker(Waker::noop());
    // Poll inside the runtime's context so providers may use tokio timers and
    // IO; the runtime re-polls it with a real waker if it is not ready.
    let runtime = server.runtime.handle().clone();
    let ready = {
        let _context = runtime.enter();
        future.as_mut().poll(&mut context)
    };
    match ready {
        Poll::Ready(result) => {
            let _ = server.auth_sender.send(AuthOutcome {
                entity,
                connection: connection_id,
                result,
            });
        }
        Poll::Pending => {
            let sender = server.auth_sender.clone();
            runtime.spawn(async move {
                let result = future.await;
                // The receiver lives as long as the server; if it is gone the
                // app is shutting down and the result does not matter.
                let _ = sender.send(AuthOutcome {
                    entity,
                    connection: connection_id,
                    result,
                });
            });
        }
    }
}

pub(super) fn apply_auth(
    world: &mut World,
    server: &mut MokoshServer,
    now: Instant,
    outcome: AuthOutcome,
) {
    // The connection may be gone, or its entity reused: check both.
    if server.connections.get(&outcome.connection) != Some(&outcome.entity) {
        return;
    }
    match outcome.result {
        Ok(identity) => {
            world
                .entity_mut(outcome.entity)
                .insert(AuthenticatedIdentity(identity));
            if let Some(mut session) = world.get_mut::<NetSession>(outcome.entity) {
                let _ = session.0.accept(now);
            }
        }
        Err(error) => {
            server.metrics.reject(Rejection::AuthFailed);
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

pub(super) fn close_connection(
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
        server.connections.remove(&connection.connection);
        server.closing.insert(connection.connection);
    }
    let client_id = entity_ref.get::<ClientId>().copied();
    let remote = entity_ref
        .get::<ClientConnection>()
        .and_then(|connection| connection.remote);
    entity_ref.despawn();
    server.metrics.connection_closed();
    if matches!(
        reason,
        DisconnectReason::IdleTimeout | DisconnectReason::HandshakeTimeout
    ) {
        server.metrics.reject(Rejection::Timeout);
    }
    match client_id {
        Some(client_id) => {
            server.clients.remove(&client_id);
            tracing::info!(%client_id, %reason, ?initiator, "client disconnected");
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
