//! Derive macros for Mokosh.
//!
//! * `#[derive(Schema)]` implements `mokosh_net::protocol::schema::Schema`, a
//!   compile-time structural hash of the type (see that module for the exact
//!   algorithm).
//! * `#[derive(GameMessage)]` with `#[route_id = N]` implements
//!   `mokosh_net::protocol::message::GameMessage` **and** `Schema`.
//!
//! The generated code refers to the runtime crate as `::mokosh_net` if the
//! calling package depends on `mokosh_net` (or is `mokosh_net` itself), and
//! otherwise as `::mokosh` (the facade), honouring renamed dependencies.

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

mod crate_path;
mod message;
mod schema;

/// Derives `GameMessage` (and `Schema`) for a non-generic struct or enum.
///
/// Requires exactly one `#[route_id = N]` attribute where `N` is an integer
/// literal in `16..=65535` (`0..=15` are reserved for Mokosh control
/// messages). The message's `NAME` is the type's identifier. The type must
/// also implement `serde::Serialize` and `serde::Deserialize`.
///
/// ```ignore
/// #[derive(Serialize, Deserialize, GameMessage)]
/// #[route_id = 16]
/// struct Chat { text: String }
/// ```
///
/// Fields accept `#[schema(with = Type)]`, as for [`derive@Schema`].
#[proc_macro_derive(GameMessage, attributes(route_id, schema))]
pub fn derive_game_message(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    message::expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Derives `Schema` for a struct or enum (generic ones included: every type
/// parameter gets a `Schema` bound).
///
/// Recursive types cannot have a finite structural hash and are rejected at
/// compile time.
///
/// # Foreign field types: `#[schema(with = Type)]`
///
/// A field whose type has no `Schema` impl (a type from another crate, which
/// the orphan rule keeps you from implementing `Schema` for) can name a
/// stand-in type whose `Schema` hash describes how the field is encoded. The
/// field then contributes `Type::SCHEMA_HASH` to the hash instead of its own
/// type's; nothing else changes (the wire bytes are whatever serde writes).
/// `Type` is any type that implements `Schema`: a built-in one that matches the
/// serde encoding, or a marker type with a hand-written impl.
///
/// ```ignore
/// // `palette::Srgba` serializes as four f32 components.
/// #[derive(Serialize, Deserialize, GameMessage)]
/// #[route_id = 20]
/// struct Paint {
///     #[schema(with = [f32; 4])]
///     color: palette::Srgba,
///     #[schema(with = UuidSchema)]
///     owner: uuid::Uuid,
/// }
///
/// /// `uuid::Uuid` as serde writes it for binary codecs: 16 bytes.
/// struct UuidSchema;
/// impl Schema for UuidSchema {
///     const SCHEMA_HASH: u64 = SchemaHasher::new().write_str("Uuid").finish();
/// }
/// ```
///
/// Choosing the stand-in is the author's responsibility: the hash can only
/// catch a change if the stand-in changes with the encoding. The attribute is
/// accepted only on fields (of structs and of enum variants).
#[proc_macro_derive(Schema, attributes(schema))]
pub fn derive_schema(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    schema::expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
