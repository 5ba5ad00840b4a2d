use mokosh_derive::GameMessage;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, GameMessage)]
struct NoRoute {
    id: u32,
}

fn main() {}
