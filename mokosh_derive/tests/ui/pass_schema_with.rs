use mokosh_derive::{GameMessage, Schema};
use mokosh_net::protocol::schema::{Schema, SchemaHasher};
use serde::{Deserialize, Serialize};

/// A type from "another crate": no `Schema` impl, and none can be added here
/// for a real foreign type.
#[derive(Serialize, Deserialize)]
struct Color {
    r: f32,
    g: f32,
    b: f32,
    a: f32,
}

/// A hand-written schema description.
struct ColorSchema;

impl Schema for ColorSchema {
    const SCHEMA_HASH: u64 = SchemaHasher::new().write_str("Color").finish();
}

#[derive(Schema)]
struct Sprite {
    #[schema(with = ColorSchema)]
    tint: Color,
    size: u16,
}

#[derive(Schema)]
struct SpriteAsArray {
    #[schema(with = [f32; 4])]
    tint: Color,
    size: u16,
}

/// The same layout with the stand-in as the real type: same hash.
#[derive(Schema)]
struct Sprite2 {
    tint: [f32; 4],
    size: u16,
}

#[derive(Schema)]
enum Paint {
    Solid(#[schema(with = ColorSchema)] Color),
    Gradient {
        #[schema(with = Vec<ColorSchema>)]
        stops: Vec<Color>,
    },
}

#[derive(Serialize, Deserialize, GameMessage)]
#[route_id = 30]
struct SetTint {
    #[schema(with = ColorSchema)]
    tint: Color,
}

const fn field_word(name: &str, hash: u64) -> SchemaHasher {
    SchemaHasher::new()
        .write_str("struct")
        .write_str(name)
        .write_str("named")
        .write_u64(1)
        .write_str("tint")
        .write_u64(hash)
}

fn main() {
    assert_eq!(
        <SetTint as Schema>::SCHEMA_HASH,
        field_word("SetTint", ColorSchema::SCHEMA_HASH).finish()
    );
    assert_ne!(
        <Sprite as Schema>::SCHEMA_HASH,
        <SpriteAsArray as Schema>::SCHEMA_HASH
    );
    assert_ne!(<Paint as Schema>::SCHEMA_HASH, 0);
    // Only the stand-in type matters, not the field's own type.
    let as_array = SchemaHasher::new()
        .write_str("struct")
        .write_str("Sprite2")
        .write_str("named")
        .write_u64(2)
        .write_str("tint")
        .write_u64(<[f32; 4] as Schema>::SCHEMA_HASH)
        .write_str("size")
        .write_u64(<u16 as Schema>::SCHEMA_HASH)
        .finish();
    assert_eq!(<Sprite2 as Schema>::SCHEMA_HASH, as_array);
    let _ = SetTint {
        tint: Color { r: 1.0, g: 0.5, b: 0.25, a: 1.0 },
    };
    let _ = (Sprite { tint: Color { r: 0.0, g: 0.0, b: 0.0, a: 0.0 }, size: 1 }, Paint::Solid(Color { r: 0.0, g: 0.0, b: 0.0, a: 0.0 }));
    let _ = SpriteAsArray { tint: Color { r: 0.0, g: 0.0, b: 0.0, a: 0.0 }, size: 1 };
    let _ = Paint::Gradient { stops: Vec::new() };
    let _ = Sprite2 { tint: [0.0; 4], size: 0 };
}
