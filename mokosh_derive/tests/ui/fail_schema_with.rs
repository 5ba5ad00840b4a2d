use mokosh_derive::{GameMessage, Schema};
use serde::{Deserialize, Serialize};

struct Foreign;

/// Not a `Schema` type either.
struct NotADescription;

#[derive(Schema)]
struct StandInWithoutSchema {
    #[schema(with = NotADescription)]
    field: Foreign,
}

#[derive(Schema)]
struct UnknownOption {
    #[schema(hash = 5)]
    field: Foreign,
}

#[derive(Schema)]
struct Twice {
    #[schema(with = u8)]
    #[schema(with = u16)]
    field: Foreign,
}

#[derive(Schema)]
#[schema(with = u8)]
struct OnTheType {
    field: u8,
}

#[derive(Schema)]
struct Recursive {
    #[schema(with = Option<Box<Recursive>>)]
    next: Foreign,
}

#[derive(Serialize, Deserialize, GameMessage)]
#[route_id = 31]
enum OnAVariant {
    #[schema(with = u8)]
    A(u8),
}

#[derive(Schema)]
struct MissingType {
    #[schema(with =)]
    field: Foreign,
}

fn main() {}
