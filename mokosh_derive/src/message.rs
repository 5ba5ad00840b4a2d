//! `#[derive(GameMessage)]`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ext::IdentExt;
use syn::{Attribute, Data, DeriveInput, Expr, ExprLit, Lit, LitInt, Meta};

use crate::crate_path::runtime_crate;
use crate::schema::schema_impl;

/// First route id available to applications (`0..=15` are Mokosh control
/// routes). Mirrors `mokosh_net::protocol::message::FIRST_USER_ROUTE`.
const FIRST_USER_ROUTE: u16 = 16;

pub(crate) fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    reject_misplaced_route_ids(input)?;
    let route = route_id(input);
    let generics = if input.generics.params.is_empty() {
        Ok(())
    } else {
        Err(syn::Error::new_spanned(
            &input.generics,
            "`GameMessage` cannot be derived for generic types: a route id identifies one \
             concrete type. Derive it on a non-generic type instead (e.g. a newtype around \
             the instantiation you send)",
        ))
    };
    let route = match (route, generics) {
        (Ok(route), Ok(())) => route,
        (Err(error), Ok(())) | (Ok(_), Err(error)) => return Err(error),
        (Err(mut first), Err(second)) => {
            first.combine(second);
            return Err(first);
        }
    };

    let krate = runtime_crate()?;
    let schema = schema_impl(input, &krate)?;
    let ident = &input.ident;
    let name = ident.unraw().to_string();
    Ok(quote! {
        #schema
        #[automatically_derived]
        impl #krate::protocol::message::GameMessage for #ident {
            const ROUTE_ID: #krate::protocol::message::RouteId = #route;
            const NAME: &'static str = #name;
        }
    })
}

/// `#[route_id]` is a helper attribute of the derive, so rustc accepts it on
/// fields and variants too; it only means something on the type itself.
fn reject_misplaced_route_ids(input: &DeriveInput) -> syn::Result<()> {
    let fields: Vec<&syn::Field> = match &input.data {
        Data::Struct(data) => data.fields.iter().collect(),
        Data::Enum(data) => data
            .variants
            .iter()
            .flat_map(|variant| variant.fields.iter())
            .collect(),
        Data::Union(data) => data.fields.named.iter().collect(),
    };
    let variant_attrs = match &input.data {
        Data::Enum(data) => data
            .variants
            .iter()
            .flat_map(|variant| variant.attrs.iter())
            .collect(),
        _ => Vec::new(),
    };
    let misplaced = fields
        .iter()
        .flat_map(|field| field.attrs.iter())
        .chain(variant_attrs)
        .find(|attr| attr.path().is_ident("route_id"));
    match misplaced {
        Some(attr) => Err(syn::Error::new_spanned(
            attr,
            "`#[route_id]` goes on the message type itself, not on a field or variant",
        )),
        None => Ok(()),
    }
}

/// Finds and validates the single `#[route_id = N]` attribute; returns `N` as
/// a `u16` literal.
fn route_id(input: &DeriveInput) -> syn::Result<proc_macro2::Literal> {
    let mut found: Option<&Attribute> = None;
    for attr in input
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("route_id"))
    {
        if found.is_some() {
            return Err(syn::Error::new_spanned(
                attr,
                "duplicate `#[route_id]` attribute: a message has exactly one route id",
            ));
        }
        found = Some(attr);
    }
    let Some(attr) = found else {
        return Err(syn::Error::new(
            input.ident.span(),
            format!(
                "missing `#[route_id = N]` attribute: `{}` needs a route id in {FIRST_USER_ROUTE}..={}, e.g. `#[route_id = {FIRST_USER_ROUTE}]`",
                input.ident,
                u16::MAX
            ),
        ));
    };
    let Meta::NameValue(name_value) = &attr.meta else {
        return Err(syn::Error::new_spanned(
            &attr.meta,
            "expected `#[route_id = N]` with an integer literal `N`",
        ));
    };
    let lit = match &name_value.value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => lit,
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => {
            return Err(syn::Error::new_spanned(
                lit,
                format!(
                    "route id must be an integer literal, not a string: write `#[route_id = {}]`",
                    lit.value()
                ),
            ));
        }
        other => {
            return Err(syn::Error::new_spanned(
                other,
                "route id must be an integer literal such as `16` (constants and expressions are not supported)",
            ));
        }
    };
    validate(lit)
}

fn validate(lit: &LitInt) -> syn::Result<proc_macro2::Literal> {
    // Suffixed literals (`16u16`) need no check: rustc rejects them in
    // attributes on its own.
    let value = lit
        .base10_parse::<u128>()
        .ok()
        .and_then(|value| u16::try_from(value).ok())
        .ok_or_else(|| {
            syn::Error::new_spanned(
                lit,
                format!(
                    "route id {} is out of range: route ids are `u16`, at most {}",
                    lit.base10_digits(),
                    u16::MAX
                ),
            )
        })?;
    if value < FIRST_USER_ROUTE {
        return Err(syn::Error::new_spanned(
            lit,
            format!(
                "route id {value} is reserved for Mokosh control messages (0..={}); user routes start at {FIRST_USER_ROUTE}",
                FIRST_USER_ROUTE - 1
            ),
        ));
    }
    let mut out = proc_macro2::Literal::u16_suffixed(value);
    out.set_span(lit.span());
    Ok(out)
}
