use mokosh_derive::GameMessage;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, GameMessage)]
#[route_id = 3]
struct Reserved {
    id: u32,
}

fn main() {}
