//! Compile-time structural schema hashes.
//!
//! Every type that travels as a typed message implements [`Schema`], whose
//! associated constant [`Schema::SCHEMA_HASH`] is a 64-bit hash of the type's
//! *structure*: its name, its shape, the names and order of its fields, and
//! (recursively) the schema hashes of the field types. Peers compare these
//! hashes (combined per route by the
//! [`MessageRegistry`](crate::protocol::registry::MessageRegistry)) during the
//! handshake, so two builds that disagree on the layout of any message refuse to
//! talk instead of mis-decoding each other's bytes.
//!
//! The hash is computed entirely at compile time: `SCHEMA_HASH` is a `const`,
//! and all helpers in this module are `const fn`. Derive it with
//! `#[derive(Schema)]` (from `mokosh_derive`, re-exported by the `mokosh`
//! facade); `#[derive(GameMessage)]` derives it too.
//!
//! # Hashing scheme (wire specification)
//!
//! This section is normative: a client written in another language must
//! reproduce these values bit-for-bit.
//!
//! ## Primitives
//!
//! * **FNV-1a-64**: offset basis `0xcbf29ce484222325`, prime
//!   `0x00000100000001b3`. For each input byte `b`: `state ^= b`, then
//!   `state = state * prime (mod 2^64)`.
//! * **`str(s)`** = FNV-1a-64 (starting from the offset basis) of the UTF-8
//!   bytes of `s`, with no length prefix or terminator. See [`hash_str`].
//! * **Word sequence hash `H[w1, w2, …, wn]`** over 64-bit words = FNV-1a-64,
//!   starting from the offset basis, of the byte string formed by
//!   concatenating the 8-byte **little-endian** encodings of `w1 … wn`.
//!   Equivalently, `H[] = offset_basis` and
//!   `H[w1 … wn] = mix(H[w1 … wn-1], wn)` with [`mix`].
//!   [`SchemaHasher`] builds such a sequence.
//! * Counts and lengths are written as plain words (`n as u64`).
//!
//! Where the tables below show a quoted string such as `"struct"`, the word is
//! `str("struct")`. Where they show a type `T`, the word is `T::SCHEMA_HASH`.
//! Where they show `n` or `N`, the word is that number as a `u64`.
//!
//! ## Built-in types
//!
//! | Type | `SCHEMA_HASH` |
//! |------|---------------|
//! | `u8 u16 u32 u64 u128 usize i8 i16 i32 i64 i128 isize f32 f64 bool char` | `H["<name>"]`, e.g. `H["u8"]` |
//! | `()` | `H["()"]` |
//! | `String` | `H["String"]` |
//! | `Vec<T>` | `H["Vec", T]` |
//! | `VecDeque<T>` | `H["VecDeque", T]` |
//! | `Option<T>` | `H["Option", T]` |
//! | `Box<T>` | `H["Box", T]` |
//! | `PhantomData<T>` | `H["PhantomData", T]` |
//! | `[T; N]` | `H["array", N, T]` |
//! | `(T1, …, Tn)`, `1 <= n <= 6` | `H["tuple", n, T1, …, Tn]` |
//! | `HashMap<K, V, S>` | `H["HashMap", K, V]` (the hasher `S` is ignored) |
//! | `BTreeMap<K, V>` | `H["BTreeMap", K, V]` |
//! | `HashSet<T, S>` | `H["HashSet", T]` (the hasher `S` is ignored) |
//! | `BTreeSet<T>` | `H["BTreeSet", T]` |
//! | `RawBytes` (see [`codec`](super::codec)) | `H["RawBytes"]` |
//! | `Vec2 Vec3 Vec3A Vec4 DVec2 DVec3 DVec4 IVec2 IVec3 IVec4 UVec2 UVec3 UVec4 BVec2 BVec3 BVec4 Quat DQuat Mat2 Mat3 Mat3A Mat4 DMat2 DMat3 DMat4 Affine2 Affine3A` (`glam` via `bevy_math`, `math` feature) | `H["<name>"]`, e.g. `H["Vec3"]` |
//!
//! Containers are deliberately *nominal*: `Vec<T>` and `VecDeque<T>` (or
//! `HashMap` and `BTreeMap`, or `T` and `Box<T>`) hash differently even though
//! serde encodes them identically. Changing one for the other is treated as a
//! protocol change; this errs on the side of refusing a connection. The same
//! holds for the math types: `Vec3`, `Vec3A` and `[f32; 3]` encode alike and
//! hash differently. (Serde writes each math type as its components in order:
//! `Quat` as `x, y, z, w`, matrices column by column.)
//!
//! ## Foreign field types: `#[schema(with = Type)]`
//!
//! A field of a type without a `Schema` impl can name a stand-in type:
//! `#[schema(with = W)] field: Foreign` contributes the word `W` (that is,
//! `W::SCHEMA_HASH`) where the field's own type would otherwise appear. The
//! scheme is otherwise unchanged, so a peer only needs the stand-in's hash.
//!
//! ```
//! use mokosh_net::protocol::schema::{Schema, SchemaHasher};
//!
//! struct Foreign(f32, f32); // imagine this comes from another crate
//!
//! #[derive(mokosh_derive::Schema)]
//! struct Marker {
//!     #[schema(with = (f32, f32))]
//!     at: Foreign,
//! }
//!
//! #[derive(mokosh_derive::Schema)]
//! struct Marker2 {
//!     at: (f32, f32),
//! }
//! # let _ = (Marker { at: Foreign(0.0, 0.0) }, Marker2 { at: (0.0, 0.0) });
//! let expected = SchemaHasher::new()
//!     .write_str("struct")
//!     .write_str("Marker")
//!     .write_str("named")
//!     .write_u64(1)
//!     .write_str("at")
//!     .write_schema::<(f32, f32)>()
//!     .finish();
//! assert_eq!(<Marker as Schema>::SCHEMA_HASH, expected);
//! ```
//!
//! ## Derived types (`#[derive(Schema)]`)
//!
//! A *shape* is a sequence of words describing a list of fields:
//!
//! | Shape | Words |
//! |-------|-------|
//! | unit (`struct S;`, `Variant`) | `"unit"` |
//! | tuple (`struct S(A, B);`, `Variant(A, B)`) | `"tuple", n, A, B, …` |
//! | named (`struct S { a: A, b: B }`, `Variant { a: A }`) | `"named", n, "a", A, "b", B, …` |
//!
//! Fields appear in declaration order; `n` is the number of fields.
//!
//! * **struct** `S`: `H["struct", "S", <shape words>]`
//! * **enum** `E` with `m` variants:
//!   `H["enum", "E", m, "V1", <shape words of V1>, "V2", <shape words of V2>, …]`,
//!   variants in declaration order.
//!
//! Names (type, field and variant) are the Rust identifiers as written, with
//! any raw-identifier prefix `r#` removed. The **type's own name is part of
//! the hash** (but not its module path): renaming a message type is a
//! protocol change, moving it to another module is not. Generic parameters
//! are not hashed by name; they influence the hash only through the fields
//! that use them, so `Wrapper<u8>` and `Wrapper<u16>` differ while
//! `std::vec::Vec<u8>` and `Vec<u8>` (or a type alias of it) are identical.
//! Explicit enum discriminants (`A = 5`) are not hashed, since serde encodes
//! variants by index.
//!
//! ### Example
//!
//! ```text
//! struct Ping { seq: u32 }
//!   = H[str("struct"), str("Ping"), str("named"), 1, str("seq"), H[str("u32")]]
//! ```
//!
//! ## Limitations
//!
//! * The hash describes the Rust type, not serde attributes:
//!   `#[serde(rename)]`, `#[serde(skip)]`, `#[serde(with)]` and the like are
//!   not reflected. Renaming a field on the Rust side while keeping its wire
//!   name *does* change the hash.
//! * **Recursive types are rejected at compile time.** A structural hash of a
//!   type that contains itself would be infinite. `#[derive(Schema)]` reports
//!   a direct self-reference (e.g. `next: Option<Box<Self>>`) with a dedicated
//!   error at the offending field; indirect recursion (mutually recursive
//!   types, or recursion through a type alias) is reported by the compiler as
//!   a cycle (`E0391`) while const-evaluating `SCHEMA_HASH`. For non-generic
//!   types the derive forces that evaluation at the definition site; for
//!   generic types it happens as soon as a concrete instantiation's hash is
//!   used (for example by `#[derive(GameMessage)]` or
//!   [`MessageRegistry::register`](crate::protocol::registry::MessageRegistry::register)).
//!   Either way it is never a run-time failure.
//!
//! ```compile_fail,E0391
//! // Mutual recursion: rejected with a const-evaluation cycle error.
//! #[derive(mokosh_derive::Schema)]
//! struct Ping {
//!     pong: Option<Box<Pong>>,
//! }
//!
//! #[derive(mokosh_derive::Schema)]
//! struct Pong {
//!     ping: Option<Box<Ping>>,
//! }
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::marker::PhantomData;

/// FNV-1a-64 offset basis (the initial state).
pub const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a-64 prime.
pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// A type with a compile-time structural hash.
///
/// Usually derived with `#[derive(Schema)]` (or implied by
/// `#[derive(GameMessage)]`). A manual implementation must follow the
/// scheme documented in the [module docs](self) so that other implementations
/// of the protocol can reproduce the value.
///
/// ```
/// use mokosh_net::protocol::schema::Schema;
///
/// #[derive(mokosh_derive::Schema)]
/// struct Position {
///     x: f32,
///     y: f32,
/// }
///
/// const HASH: u64 = <Position as Schema>::SCHEMA_HASH;
/// assert_ne!(HASH, <(f32, f32) as Schema>::SCHEMA_HASH);
/// ```
pub trait Schema {
    /// The structural hash of this type; see the [module docs](self).
    const SCHEMA_HASH: u64;
}

/// Continues an FNV-1a-64 computation from `state` over `bytes`.
///
/// `fnv1a64_extend(FNV_OFFSET_BASIS, b)` is the plain FNV-1a-64 of `b`.
#[must_use]
pub const fn fnv1a64_extend(state: u64, bytes: &[u8]) -> u64 {
    let mut state = state;
    let mut i = 0;
    while i < bytes.len() {
        state ^= bytes[i] as u64;
        state = state.wrapping_mul(FNV_PRIME);
        i += 1;
    }
    state
}

/// FNV-1a-64 of `bytes`, starting from [`FNV_OFFSET_BASIS`].
#[must_use]
pub const fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_extend(FNV_OFFSET_BASIS, bytes)
}

/// `str(s)` of the module docs: FNV-1a-64 of the UTF-8 bytes of `s`.
#[must_use]
pub const fn hash_str(s: &str) -> u64 {
    fnv1a64(s.as_bytes())
}

/// Appends the 64-bit `word` to the word-sequence hash `acc`.
///
/// Feeds the 8 little-endian bytes of `word` through FNV-1a-64, continuing
/// from `acc`. Order-sensitive: `mix(mix(a, x), y)` and `mix(mix(a, y), x)`
/// differ whenever `x != y`. Start a sequence from [`FNV_OFFSET_BASIS`].
#[must_use]
pub const fn mix(acc: u64, word: u64) -> u64 {
    fnv1a64_extend(acc, &word.to_le_bytes())
}

/// `const` builder for a word-sequence hash `H[w1, …, wn]`.
///
/// This is what `#[derive(Schema)]` expands to:
///
/// ```
/// use mokosh_net::protocol::schema::{hash_str, mix, Schema, SchemaHasher, FNV_OFFSET_BASIS};
///
/// const A: u64 = SchemaHasher::new()
///     .write_str("Vec")
///     .write_u64(<u8 as Schema>::SCHEMA_HASH)
///     .finish();
/// const B: u64 = mix(mix(FNV_OFFSET_BASIS, hash_str("Vec")), <u8 as Schema>::SCHEMA_HASH);
/// assert_eq!(A, B);
/// assert_eq!(A, <Vec<u8> as Schema>::SCHEMA_HASH);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct SchemaHasher {
    state: u64,
}

impl SchemaHasher {
    /// An empty sequence (`H[]`, i.e. [`FNV_OFFSET_BASIS`]).
    pub const fn new() -> Self {
        Self {
            state: FNV_OFFSET_BASIS,
        }
    }

    /// Appends the word `word`.
    pub const fn write_u64(self, word: u64) -> Self {
        Self {
            state: mix(self.state, word),
        }
    }

    /// Appends the word `str(s)` (see [`hash_str`]).
    pub const fn write_str(self, s: &str) -> Self {
        self.write_u64(hash_str(s))
    }

    /// Appends the word `T::SCHEMA_HASH`.
    pub const fn write_schema<T: Schema + ?Sized>(self) -> Self {
        self.write_u64(T::SCHEMA_HASH)
    }

    /// The hash of the sequence written so far.
    #[must_use]
    pub const fn finish(self) -> u64 {
        self.state
    }
}

impl Default for SchemaHasher {
    fn default() -> Self {
        Self::new()
    }
}

macro_rules! leaf_schema {
    ($($ty:ty => $name:literal),* $(,)?) => {
        $(
            impl Schema for $ty {
                const SCHEMA_HASH: u64 = SchemaHasher::new().write_str($name).finish();
            }
        )*
    };
}

leaf_schema! {
    u8 => "u8", u16 => "u16", u32 => "u32", u64 => "u64", u128 => "u128", usize => "usize",
    i8 => "i8", i16 => "i16", i32 => "i32", i64 => "i64", i128 => "i128", isize => "isize",
    f32 => "f32", f64 => "f64", bool => "bool", char => "char",
    () => "()", String => "String",
}

macro_rules! container_schema {
    ($($tag:literal => [$($param:ident),+] $ty:ty $(, where $($extra:ident),+)?);* $(;)?) => {
        $(
            impl<$($param: Schema,)+ $($($extra,)+)?> Schema for $ty {
                const SCHEMA_HASH: u64 = SchemaHasher::new()
                    .write_str($tag)
                    $(.write_u64(<$param as Schema>::SCHEMA_HASH))+
                    .finish();
            }
        )*
    };
}

container_schema! {
    "Vec" => [T] Vec<T>;
    "VecDeque" => [T] VecDeque<T>;
    "Option" => [T] Option<T>;
    "Box" => [T] Box<T>;
    "PhantomData" => [T] PhantomData<T>;
    "HashMap" => [K, V] HashMap<K, V, S>, where S;
    "BTreeMap" => [K, V] BTreeMap<K, V>;
    "HashSet" => [T] HashSet<T, S>, where S;
    "BTreeSet" => [T] BTreeSet<T>;
}

impl<T: Schema, const N: usize> Schema for [T; N] {
    const SCHEMA_HASH: u64 = SchemaHasher::new()
        .write_str("array")
        .write_u64(N as u64)
        .write_u64(T::SCHEMA_HASH)
        .finish();
}

macro_rules! tuple_schema {
    ($($n:literal => ($($t:ident),+);)*) => {
        $(
            impl<$($t: Schema),+> Schema for ($($t,)+) {
                const SCHEMA_HASH: u64 = SchemaHasher::new()
                    .write_str("tuple")
                    .write_u64($n)
                    $(.write_u64(<$t as Schema>::SCHEMA_HASH))+
                    .finish();
            }
        )*
    };
}

tuple_schema! {
    1 => (A);
    2 => (A, B);
    3 => (A, B, C);
    4 => (A, B, C, D);
    5 => (A, B, C, D, E);
    6 => (A, B, C, D, E, F);
}

// Compile-time conformance check: `#[derive(Schema)]` must produce exactly the
// value the scheme above specifies. (It also keeps this crate's
// `extern crate self as mokosh_net`, which derived code relies on, in use.)
const _: () = {
    #[allow(dead_code)]
    #[derive(mokosh_derive::Schema)]
    struct Ping {
        seq: u32,
    }
    let expected = SchemaHasher::new()
        .write_str("struct")
        .write_str("Ping")
        .write_str("named")
        .write_u64(1)
        .write_str("seq")
        .write_u64(SchemaHasher::new().write_str("u32").finish())
        .finish();
    assert!(<Ping as Schema>::SCHEMA_HASH == expected);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_reference_vectors() {
        // Published FNV-1a-64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn mix_is_fnv_over_le_words() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&7u64.to_le_bytes());
        bytes.extend_from_slice(&hash_str("x").to_le_bytes());
        assert_eq!(
            mix(mix(FNV_OFFSET_BASIS, 7), hash_str("x")),
            fnv1a64(&bytes)
        );
    }

    #[test]
    fn mix_is_order_sensitive() {
        let a = mix(mix(FNV_OFFSET_BASIS, 1), 2);
        let b = mix(mix(FNV_OFFSET_BASIS, 2), 1);
        assert_ne!(a, b);
    }

    #[test]
    fn builtins_are_distinct() {
        let hashes = [
            <u8 as Schema>::SCHEMA_HASH,
            <i8 as Schema>::SCHEMA_HASH,
            <u16 as Schema>::SCHEMA_HASH,
            <usize as Schema>::SCHEMA_HASH,
            <() as Schema>::SCHEMA_HASH,
            <String as Schema>::SCHEMA_HASH,
            <Vec<u8> as Schema>::SCHEMA_HASH,
            <VecDeque<u8> as Schema>::SCHEMA_HASH,
            <Option<u8> as Schema>::SCHEMA_HASH,
            <Box<u8> as Schema>::SCHEMA_HASH,
            <[u8; 1] as Schema>::SCHEMA_HASH,
            <[u8; 2] as Schema>::SCHEMA_HASH,
            <(u8,) as Schema>::SCHEMA_HASH,
            <(u8, u8) as Schema>::SCHEMA_HASH,
            <HashMap<u8, u16> as Schema>::SCHEMA_HASH,
            <HashMap<u16, u8> as Schema>::SCHEMA_HASH,
            <BTreeMap<u8, u16> as Schema>::SCHEMA_HASH,
            <HashSet<u8> as Schema>::SCHEMA_HASH,
            <BTreeSet<u8> as Schema>::SCHEMA_HASH,
        ];
        for (i, a) in hashes.iter().enumerate() {
            for b in &hashes[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
