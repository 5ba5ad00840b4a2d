//! The implementation of [`MokoshAppExt`]: the one place that knows both the
//! server's and the client's typed message systems, so that
//! [`shared`](crate::shared) depends on neither.

use bevy_app::App;

use crate::protocol::GameMessage;
use crate::protocol::message::Direction;
use crate::shared::{MessageHook, MokoshAppExt, register_message};

impl MokoshAppExt for App {
    fn add_game_message<M: GameMessage>(&mut self) -> &mut Self {
        add::<M>(self, M::DIRECTION)
    }

    fn add_client_message<M: GameMessage>(&mut self) -> &mut Self {
        add::<M>(self, Direction::ClientToServer)
    }

    fn add_server_message<M: GameMessage>(&mut self) -> &mut Self {
        add::<M>(self, Direction::ServerToClient)
    }
}

fn add<M: GameMessage>(app: &mut App, direction: Direction) -> &mut App {
    #[cfg(feature = "server")]
    let server: MessageHook = crate::server::add_message_systems::<M>;
    #[cfg(not(feature = "server"))]
    let server: MessageHook = no_systems;
    #[cfg(feature = "client")]
    let client: MessageHook = crate::client::add_message_systems::<M>;
    #[cfg(not(feature = "client"))]
    let client: MessageHook = no_systems;
    register_message::<M>(app, direction, server, client);
    app
}

/// The hook of a side compiled out of this build.
#[cfg(not(all(feature = "server", feature = "client")))]
fn no_systems(_: &mut App, _: Direction) {}
