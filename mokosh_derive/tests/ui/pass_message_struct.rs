use mokosh_derive::GameMessage;
use mokosh_net::protocol::message::GameMessage;
use mokosh_net::protocol::schema::Schema;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, GameMessage)]
#[route_id = 16]
struct Named {
    id: u32,
    r#type: String,
}

#[derive(Serialize, Deserialize, GameMessage)]
#[route_id = 65535]
struct Tuple(u8, Vec<u16>);

#[derive(Serialize, Deserialize, GameMessage)]
#[route_id = 0x20]
struct Unit;

fn main() {
    const ROUTES: [u16; 3] = [Named::ROUTE_ID, Tuple::ROUTE_ID, Unit::ROUTE_ID];
    assert_eq!(ROUTES, [16, 65535, 32]);
    assert_eq!(Named::NAME, "Named");
    assert_ne!(Named::SCHEMA_HASH, Unit::SCHEMA_HASH);
}
