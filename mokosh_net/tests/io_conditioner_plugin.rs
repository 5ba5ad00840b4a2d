//! The link conditioner through the server plugin's config, in a two-App test
//! on virtual time (memory transport): clients connect, messages flow both
//! ways, and the RTT the protocol measures reflects the added latency.

use std::time::Duration;

use bevy_app::{App, FixedUpdate};
use bevy_ecs::prelude::*;
use mokosh_derive::GameMessage;
use mokosh_net::client::{FromServer, MokoshClient, ToServer};
use mokosh_net::io::conditioner::LinkConditionerConfig;
use mokosh_net::protocol::KeyPair;
use mokosh_net::server::{ConnectionRtt, FromClient, SendTarget, ToClients};
use mokosh_net::shared::MokoshAppExt;
use mokosh_net::testing::{TestNetwork, client_app, server_app};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 120]
struct Say {
    n: u32,
}

const LATENCY: Duration = Duration::from_millis(100);

fn echo(mut inbox: MessageReader<FromClient<Say>>, mut outbox: MessageWriter<ToClients<Say>>) {
    for said in inbox.read() {
        outbox.write(ToClients::new(
            SendTarget::Client(said.client_id),
            said.message.clone(),
        ));
    }
}

#[derive(Resource, Default)]
struct Heard(Vec<u32>);

fn hear(mut inbox: MessageReader<FromServer<Say>>, mut heard: ResMut<Heard>) {
    heard.0.extend(inbox.read().map(|m| m.message.n));
}

fn client(key: &KeyPair) -> App {
    let mut app = client_app(key.public(), "player", |_| {});
    app.add_game_message::<Say>()
        .init_resource::<Heard>()
        .add_systems(FixedUpdate, hear);
    app
}

#[test]
fn a_conditioned_memory_link_delays_by_the_configured_latency() {
    let keypair = KeyPair::generate().unwrap();
    let mut server = server_app(keypair.clone(), |config| {
        config.link_conditioner = Some(LinkConditionerConfig {
            latency: LATENCY,
            jitter: Duration::from_millis(20),
            seed: 5,
            ..Default::default()
        });
    });
    server
        .add_game_message::<Say>()
        .add_systems(FixedUpdate, echo);
    let mut network = TestNetwork::new(server, vec![client(&keypair), client(&keypair)]);
    assert!(network.run_until(300, |net| net.all_connected()));
    for (i, app) in network.clients.iter_mut().enumerate() {
        for n in 0..5 {
            app.world_mut().write_message(ToServer::new(Say {
                n: n + 10 * i as u32,
            }));
        }
    }
    // Pings every second of virtual time; 4 s is several samples.
    assert!(network.run_until(240, |net| {
        net.clients.iter().all(|app| {
            app.world().resource::<Heard>().0.len() == 5
                && app.world().resource::<MokoshClient>().rtt().samples >= 2
        })
    }));
    for (i, app) in network.clients.iter().enumerate() {
        let expected: Vec<u32> = (0..5).map(|n| n + 10 * i as u32).collect();
        assert_eq!(app.world().resource::<Heard>().0, expected, "in order");
        let rtt = app.world().resource::<MokoshClient>().rtt();
        assert!(rtt.min >= LATENCY, "client {i} measured {rtt:?}");
    }
    // The server's own pings cross the conditioned link too.
    let world = network.server.world_mut();
    let mut query = world.query::<&ConnectionRtt>();
    let rtts: Vec<_> = query.iter(world).map(|rtt| rtt.0).collect();
    assert_eq!(rtts.len(), 2);
    assert!(
        rtts.iter().all(|rtt| rtt.samples > 0 && rtt.min >= LATENCY),
        "{rtts:?}"
    );
}

#[test]
fn without_the_conditioner_the_rtt_is_a_few_ticks() {
    let keypair = KeyPair::generate().unwrap();
    let mut server = server_app(keypair.clone(), |_| {});
    server.add_game_message::<Say>();
    let mut network = TestNetwork::new(server, vec![client(&keypair)]);
    assert!(network.run_until(300, |net| net.all_connected()));
    assert!(network.run_until(240, |net| {
        net.clients[0]
            .world()
            .resource::<MokoshClient>()
            .rtt()
            .samples
            >= 2
    }));
    let rtt = network.clients[0].world().resource::<MokoshClient>().rtt();
    assert!(rtt.min < LATENCY, "{rtt:?}");
}
