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
    let (budget_bytes, slow_ticks) = {
        let io = &world.resource::<MokoshServer>().config.io;
        (io.outbound_budget_bytes, io.slow_consumer_ticks.max(1))
    };
    world.resource_scope::<MokoshServer, _>(|world, mut server| {
        let entities: Vec<Entity> = server.connections.values().copied().collect();
        for entity in entities {
            let Some((link, conditioner)) = world
                .get::<ClientConnection>(entity)
                .map(|connection| (connection.link.clone(), connection.conditioner.clone()))
            else {
                continue;
            };
            if let Some(conditioner) = &conditioner {
                // Stamps this tick's sends with `now`, releases what is due.
                conditioner.poll(now);
            }
            let Some(mut session) = world.get_mut::<NetSession>(entity) else {
                continue;
            };
            let session = &mut session.0;
            session.handle_timeout(now);
            let mut refused = false;
            while let Some(frame) = session.poll_transmit() {
                let len = frame.len() as u64;
                match link.send(frame) {
                    Ok(()) => server.metrics.bytes_out(len),
                    Err(io::LinkError::Full) => {
                        refused = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            // The slow-consumer policy: over the hard cap at once, over the
            // byte budget only when it persists for several ticks, so a burst
            // that a healthy reader drains in time drops nobody.
            let over_budget = link.backlog_bytes() > budget_bytes;
            let ticks = world
                .get_mut::<ClientConnection>(entity)
                .map(|mut connection| {
                    connection.over_budget_ticks = if over_budget {
                        connection.over_budget_ticks.saturating_add(1)
                    } else {
                        0
                    };
                    connection.over_budget_ticks
                })
                .unwrap_or(0);
            let Some(mut session) = world.get_mut::<NetSession>(entity) else {
                continue;
            };
            let session = &mut session.0;
            if refused || ticks >= slow_ticks {
                let detail = if refused {
                    "outbound queue full"
                } else {
                    "outbound backlog over budget"
                };
                session.disconnect(DisconnectReason::SlowConsumer, detail);
                // The DISCONNECT goes out when the transport can still carry
                // it (under the hard cap); anything else is dropped.
                while let Some(frame) = session.poll_transmit() {
                    let len = frame.len() as u64;
                    if !refused && link.send(frame).is_ok() {
                        server.metrics.bytes_out(len);
                    }
                }
            }
            if let Some(conditioner) = &conditioner {
                conditioner.poll(now);
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
