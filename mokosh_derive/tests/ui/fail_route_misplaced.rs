use mokosh_derive::GameMessage;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, GameMessage)]
#[route_id = 16]
enum Event {
    #[route_id = 17]
    Spawn,
    Despawn,
}

#[derive(Serialize, Deserialize, GameMessage)]
struct OnField {
    #[route_id = 18]
    id: u32,
}

fn main() {}
