//! Flush: timers and sealed frames to the IO layer.

use bevy_ecs::prelude::*;

use super::MokoshServer;
use super::components::{ClientConnection, ConnectionRtt, NetSession, TrafficStats};
use super::lifecycle::process_session_events;
use super::messages::ServerInbox;
use crate::io;
use crate::protocol::DisconnectReason;
use crate::shared::now;

pub(super) fn flush_system(world: &mut World) {
    let now = now(world);
    world.resource_scope::<MokoshServer, _>(|world, mut server| {
        let entities: Vec<Entity> = server.connections.values().copied().collect();
        for entity in entities {
            let Some(link) = world
                .get::<ClientConnection>(entity)
                .map(|connection| connection.link.clone())
            else {
                continue;
            };
            let Some(mut session) = world.get_mut::<NetSession>(entity) else {
                continue;
            };
            let session = &mut session.0;
            session.handle_timeout(now);
            let mut slow = false;
            while let Some(frame) = session.poll_transmit() {
                let len = frame.len() as u64;
                match link.send(frame) {
                    Ok(()) => server.metrics.bytes_out(len),
                    Err(io::LinkError::Full) => {
                        slow = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            if slow {
                session.disconnect(DisconnectReason::SlowConsumer, "outbound queue full");
                // Nothing more can be queued for this peer.
                while session.poll_transmit().is_some() {}
            }
            let (rtt, stats) = (session.rtt(), session.stats());
            if let Some(mut component) = world.get_mut::<ConnectionRtt>(entity) {
                component.0 = rtt;
            }
            if let Some(mut component) = world.get_mut::<TrafficStats>(entity) {
                component.0 = stats;
            }
            process_session_events(world, &mut server, entity);
        }
    });
    world.resource_mut::<ServerInbox>().by_route.clear();
}
