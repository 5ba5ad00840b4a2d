//! Locating the runtime crate from the caller's `Cargo.toml`.

use proc_macro_crate::{FoundCrate, crate_name};
use proc_macro2::{Span, TokenStream};
use quote::quote;

/// Path to the runtime crate's root, e.g. `::mokosh_net` or `::mokosh`.
///
/// `mokosh_net` is preferred (inside `mokosh_net` itself, `FoundCrate::Itself`
/// maps to `::mokosh_net`, which resolves thanks to its
/// `extern crate self as mokosh_net;`); otherwise the `mokosh` facade, which
/// re-exports `mokosh_net`'s modules at its root.
pub(crate) fn runtime_crate() -> syn::Result<TokenStream> {
    let found = crate_name("mokosh_net")
        .map(|found| (found, "mokosh_net"))
        .or_else(|_| crate_name("mokosh").map(|found| (found, "mokosh")));
    match found {
        Ok((FoundCrate::Itself, own_name)) => {
            let ident = syn::Ident::new(own_name, Span::call_site());
            Ok(quote!(::#ident))
        }
        Ok((FoundCrate::Name(name), _)) => {
            let ident = syn::Ident::new(&name, Span::call_site());
            Ok(quote!(::#ident))
        }
        Err(_) => Err(syn::Error::new(
            Span::call_site(),
            "mokosh_derive: add `mokosh` (or `mokosh_net`) to this package's [dependencies]",
        )),
    }
}
