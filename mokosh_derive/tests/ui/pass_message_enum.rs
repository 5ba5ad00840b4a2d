use mokosh_derive::GameMessage;
use mokosh_net::protocol::message::GameMessage;
use mokosh_net::protocol::schema::Schema;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, GameMessage)]
#[route_id = 100]
enum Command {
    Stop,
    Move(i16, i16),
    Say { text: String, loud: bool },
}

fn main() {
    assert_eq!(Command::ROUTE_ID, 100);
    assert_eq!(Command::NAME, "Command");
    let _ = Command::SCHEMA_HASH;
    let _ = [Command::Stop, Command::Move(1, 2), Command::Say { text: String::new(), loud: false }];
}
