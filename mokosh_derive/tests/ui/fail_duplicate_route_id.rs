use mokosh_derive::GameMessage;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, GameMessage)]
#[route_id = 16]
#[route_id = 17]
struct Twice;

fn main() {}
