use mokosh_derive::GameMessage;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, GameMessage)]
#[route_id = 16]
struct Envelope<T> {
    inner: T,
}

fn main() {}
