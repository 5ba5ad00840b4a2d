//! The link conditioner on real loopback WebSockets, configured through both
//! plugins: a client connects, exchanges messages, and the RTT the protocol
//! measures includes the latency added on both sides. Every wait is bounded;
//! the assertion is on the protocol's RTT, not on wall time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bevy_app::{App, FixedUpdate};
use bevy_ecs::prelude::*;
use mokosh_derive::GameMessage;
use mokosh_net::auth::DevAuthProvider;
use mokosh_net::client::{
    ClientPluginConfig, ConnectTarget, ConnectionState, FromServer, MokoshClient,
    MokoshClientPlugin, ToServer,
};
use mokosh_net::io::conditioner::LinkConditionerConfig;
use mokosh_net::protocol::KeyPair;
use mokosh_net::server::{
    FromClient, MokoshServer, MokoshServerPlugin, SendTarget, ServerPluginConfig, ToClients,
};
use mokosh_net::shared::MokoshAppExt;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, GameMessage)]
#[route_id = 121]
struct Say {
    n: u32,
}

const SERVER_LATENCY: Duration = Duration::from_millis(50);
const CLIENT_LATENCY: Duration = Duration::from_millis(30);

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

#[test]
fn a_conditioned_websocket_link_adds_its_latency_to_the_measured_rtt() {
    let keypair = KeyPair::generate().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = std::thread::spawn({
        let (keypair, stop) = (keypair.clone(), Arc::clone(&stop));
        move || {
            let mut config = ServerPluginConfig::websocket("127.0.0.1:0".parse().unwrap(), keypair)
                .with_link_conditioner(LinkConditionerConfig {
                    latency: SERVER_LATENCY,
                    jitter: Duration::from_millis(10),
                    seed: 1,
                    ..Default::default()
                });
            config.auth = Some(Arc::new(DevAuthProvider::new()));
            let mut app = App::new();
            app.add_plugins(MokoshServerPlugin::new(config))
                .add_game_message::<Say>()
                .add_systems(FixedUpdate, echo);
            app.finish();
            app.cleanup();
            app.update();
            let addr = app.world().resource::<MokoshServer>().local_addr().unwrap();
            ready_tx.send(addr).unwrap();
            while !stop.load(Ordering::Relaxed) {
                app.update();
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    let addr = ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();

    let config = ClientPluginConfig::new(keypair.public(), "player").with_link_conditioner(
        LinkConditionerConfig {
            latency: CLIENT_LATENCY,
            ..Default::default()
        },
    );
    let mut client = App::new();
    client
        .add_plugins(MokoshClientPlugin::new(config))
        .add_game_message::<Say>()
        .init_resource::<Heard>()
        .add_systems(FixedUpdate, hear);
    client.finish();
    client.cleanup();
    client
        .world_mut()
        .resource_mut::<MokoshClient>()
        .connect(ConnectTarget::WebSocket(format!("ws://{addr}")));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = false;
    loop {
        client.update();
        let connected = matches!(
            client.world().resource::<ConnectionState>(),
            ConnectionState::Connected { .. }
        );
        if connected && !sent {
            for n in 0..5 {
                client.world_mut().write_message(ToServer::new(Say { n }));
            }
            sent = true;
        }
        let heard = client.world().resource::<Heard>().0.len();
        let rtt = client.world().resource::<MokoshClient>().rtt();
        if heard == 5 && rtt.samples >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "heard {heard}, rtt {rtt:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    assert_eq!(client.world().resource::<Heard>().0, vec![0, 1, 2, 3, 4]);
    let rtt = client.world().resource::<MokoshClient>().rtt();
    assert!(rtt.min >= SERVER_LATENCY + CLIENT_LATENCY, "{rtt:?}");
}
