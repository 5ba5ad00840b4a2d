use mokosh_derive::GameMessage;
use serde::{Deserialize, Serialize};

const ROUTE: u16 = 16;

#[derive(Serialize, Deserialize, GameMessage)]
#[route_id = ROUTE]
struct ByConst;

#[derive(Serialize, Deserialize, GameMessage)]
#[route_id = -20]
struct Negative;

#[derive(Serialize, Deserialize, GameMessage)]
#[route_id(16)]
struct ListForm;

fn main() {}
