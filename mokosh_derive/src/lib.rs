//! Derive macros for Mokosh.
use proc_macro::TokenStream;

/// Placeholder replaced by the derive implementation.
#[proc_macro_derive(GameMessage, attributes(route_id))]
pub fn derive_game_message(_input: TokenStream) -> TokenStream {
    TokenStream::new()
}

/// Placeholder replaced by the derive implementation.
#[proc_macro_derive(Schema)]
pub fn derive_schema(_input: TokenStream) -> TokenStream {
    TokenStream::new()
}
