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
#[proc_macro_derive(GameMessage, attributes(route_id))]
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
#[proc_macro_derive(Schema)]
pub fn derive_schema(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    schema::expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
