//! [`Schema`] for the `glam` vectors, quaternions and matrices Bevy games use
//! (the `math` feature).
//!
//! The types are `bevy_math`'s re-exports of `glam`, so `bevy::math::Vec3`,
//! `bevy_math::Vec3` and `glam::Vec3` of the same `glam` version are all the
//! same type. The feature also turns on `bevy_math`'s `serialize` feature
//! (`glam/serde`), so the types can be fields of messages with every codec:
//! serde writes each as a fixed-length sequence of its components (`Vec3` as
//! three `f32`, `Quat` as `x, y, z, w`, matrices column by column).
//!
//! Each hash is the word sequence `H["<type name>"]` (see
//! [`protocol::schema`](crate::protocol::schema)); the names are listed in the
//! schema module's built-in type table and in `docs/PROTOCOL.md` section 11.
//! The hashes are nominal, like the containers': `Vec3` and `Vec3A` encode
//! identically but hash differently, and neither equals `[f32; 3]`.

use bevy_math::{
    Affine2, Affine3A, BVec2, BVec3, BVec4, DMat2, DMat3, DMat4, DQuat, DVec2, DVec3, DVec4, IVec2,
    IVec3, IVec4, Mat2, Mat3, Mat3A, Mat4, Quat, UVec2, UVec3, UVec4, Vec2, Vec3, Vec3A, Vec4,
};

use crate::protocol::schema::{Schema, SchemaHasher};

macro_rules! math_schema {
    ($($ty:ident),* $(,)?) => {
        $(
            impl Schema for $ty {
                const SCHEMA_HASH: u64 = SchemaHasher::new().write_str(stringify!($ty)).finish();
            }
        )*
    };
}

math_schema! {
    Vec2, Vec3, Vec3A, Vec4,
    DVec2, DVec3, DVec4,
    IVec2, IVec3, IVec4,
    UVec2, UVec3, UVec4,
    BVec2, BVec3, BVec4,
    Quat, DQuat,
    Mat2, Mat3, Mat3A, Mat4,
    DMat2, DMat3, DMat4,
    Affine2, Affine3A,
}
