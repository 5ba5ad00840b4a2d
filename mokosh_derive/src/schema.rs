//! `#[derive(Schema)]`.
//!
//! The generated `SCHEMA_HASH` follows the scheme documented (normatively) in
//! `mokosh_net::protocol::schema`; keep the two in sync.

use proc_macro2::{Delimiter, Ident, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Field, Fields, Type};

use crate::crate_path::runtime_crate;

pub(crate) fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let krate = runtime_crate()?;
    schema_impl(input, &krate)
}

/// The `impl Schema` block (plus, for non-generic types, a `const` that forces
/// the hash to be evaluated so recursion is reported at the definition).
pub(crate) fn schema_impl(input: &DeriveInput, krate: &TokenStream) -> syn::Result<TokenStream> {
    let schema = quote!(#krate::protocol::schema::Schema);
    let ident = &input.ident;
    let name = ident.unraw().to_string();
    reject_misplaced_schema_attrs(input)?;

    let body = match &input.data {
        Data::Struct(data) => {
            reject_recursion(ident, &data.fields)?;
            let shape = shape_words(&data.fields, &schema)?;
            quote!(.write_str("struct").write_str(#name) #shape)
        }
        Data::Enum(data) => {
            let count = data.variants.len() as u64;
            let mut words = quote!(.write_str("enum").write_str(#name).write_u64(#count));
            for variant in &data.variants {
                reject_recursion(ident, &variant.fields)?;
                let variant_name = variant.ident.unraw().to_string();
                let shape = shape_words(&variant.fields, &schema)?;
                words.extend(quote!(.write_str(#variant_name) #shape));
            }
            words
        }
        Data::Union(data) => {
            return Err(syn::Error::new(
                data.union_token.span(),
                "`Schema` cannot be derived for unions: use a struct or an enum",
            ));
        }
    };

    let mut generics = input.generics.clone();
    let type_params: Vec<Ident> = generics
        .type_params()
        .map(|param| param.ident.clone())
        .collect();
    if !type_params.is_empty() {
        let where_clause = generics.make_where_clause();
        for param in &type_params {
            where_clause
                .predicates
                .push(syn::parse_quote!(#param: #schema));
        }
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    let force = if input.generics.params.is_empty() {
        // Evaluating the constant here turns indirect recursion (which the
        // syntactic check cannot see) into a compile error at the definition.
        quote! {
            const _: u64 = <#ident as #schema>::SCHEMA_HASH;
        }
    } else {
        TokenStream::new()
    };

    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics #schema for #ident #ty_generics #where_clause {
            const SCHEMA_HASH: u64 = #krate::protocol::schema::SchemaHasher::new()
                #body
                .finish();
        }
        #force
    })
}

/// The shape words of a field list: `"unit"`, `"tuple", n, T…` or
/// `"named", n, "name", T, …`.
fn shape_words(fields: &Fields, schema: &TokenStream) -> syn::Result<TokenStream> {
    let count = fields.len() as u64;
    let field_hash = |field: &Field| -> syn::Result<TokenStream> {
        let ty = schema_type(field)?;
        // Span the trait lookup at the (stand-in) type so a missing `Schema`
        // impl is reported there.
        Ok(quote_spanned!(ty.span()=> .write_u64(<#ty as #schema>::SCHEMA_HASH)))
    };
    Ok(match fields {
        Fields::Unit => quote!(.write_str("unit")),
        Fields::Unnamed(unnamed) => {
            let hashes = unnamed
                .unnamed
                .iter()
                .map(field_hash)
                .collect::<syn::Result<Vec<_>>>()?;
            quote!(.write_str("tuple").write_u64(#count) #(#hashes)*)
        }
        Fields::Named(named) => {
            let mut words = Vec::new();
            for field in &named.named {
                let field_name = field
                    .ident
                    .as_ref()
                    .map(|ident| ident.unraw().to_string())
                    .unwrap_or_default();
                let hash = field_hash(field)?;
                words.push(quote!(.write_str(#field_name) #hash));
            }
            quote!(.write_str("named").write_u64(#count) #(#words)*)
        }
    })
}

/// The type whose `Schema` hash stands for `field`: the type named by
/// `#[schema(with = Type)]`, or else the field's own type.
fn schema_type(field: &Field) -> syn::Result<Type> {
    let mut with: Option<Type> = None;
    for attr in schema_attrs(&field.attrs) {
        let ty = attr.parse_args_with(|input: syn::parse::ParseStream<'_>| {
            let key: Ident = input.parse()?;
            if key != "with" {
                return Err(syn::Error::new(
                    key.span(),
                    "unknown `schema` option: expected `#[schema(with = Type)]`",
                ));
            }
            input.parse::<syn::Token![=]>()?;
            let ty: Type = input.parse()?;
            if !input.is_empty() {
                return Err(input.error("expected only `with = Type`"));
            }
            Ok(ty)
        })?;
        if with.is_some() {
            return Err(syn::Error::new_spanned(
                attr,
                "a field can have only one `#[schema(with = ...)]`",
            ));
        }
        with = Some(ty);
    }
    Ok(with.unwrap_or_else(|| field.ty.clone()))
}

fn schema_attrs(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|attr| attr.path().is_ident("schema"))
}

/// `#[schema(...)]` is a helper attribute of the derive, so rustc accepts it on
/// the type and on variants too; it only means something on a field.
fn reject_misplaced_schema_attrs(input: &DeriveInput) -> syn::Result<()> {
    let variant_attrs: Vec<&Attribute> = match &input.data {
        Data::Enum(data) => data
            .variants
            .iter()
            .flat_map(|variant| schema_attrs(&variant.attrs))
            .collect(),
        Data::Struct(_) | Data::Union(_) => Vec::new(),
    };
    match schema_attrs(&input.attrs).chain(variant_attrs).next() {
        Some(attr) => Err(syn::Error::new_spanned(
            attr,
            "`#[schema(with = Type)]` belongs on a field, not on a type or variant",
        )),
        None => Ok(()),
    }
}

/// Rejects fields whose type mentions the type being defined (`Self` or its
/// own name as a path's first segment), which would make the hash infinite.
/// For a field with `#[schema(with = Type)]` the stand-in type is checked.
fn reject_recursion(own: &Ident, fields: &Fields) -> syn::Result<()> {
    for field in fields {
        let ty = schema_type(field)?;
        if mentions_self(own, ty.to_token_stream()) {
            return Err(syn::Error::new_spanned(
                &ty,
                format!(
                    "`{own}` is recursive: a structural schema hash of a type that contains \
                     itself would be infinite, so recursive types cannot implement `Schema`; \
                     break the cycle explicitly (e.g. keep the nodes in a flat `Vec` and \
                     refer to them by index)"
                ),
            ));
        }
    }
    Ok(())
}

fn mentions_self(own: &Ident, tokens: TokenStream) -> bool {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    for (i, token) in tokens.iter().enumerate() {
        match token {
            TokenTree::Group(group) => {
                // The length expression of `[T; LEN]` is a value, not a type.
                let inner = if group.delimiter() == Delimiter::Bracket {
                    bracket_element_tokens(group.stream())
                } else {
                    group.stream()
                };
                if mentions_self(own, inner) {
                    return true;
                }
            }
            TokenTree::Ident(ident) if ident == "Self" || ident == own => {
                // Skip `a::Own` (another item of the same name), `'Own`
                // (lifetime) and `Own::…` (associated items).
                let after_path_sep =
                    i >= 2 && is_punct(&tokens[i - 1], ':') && is_punct(&tokens[i - 2], ':');
                let lifetime = i >= 1 && is_punct(&tokens[i - 1], '\'');
                let before_path_sep =
                    is_punct_at(&tokens, i + 1, ':') && is_punct_at(&tokens, i + 2, ':');
                if !after_path_sep && !lifetime && !before_path_sep {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// For `[T; LEN]`, the tokens of `T`; for `[T]`, all tokens.
fn bracket_element_tokens(stream: TokenStream) -> TokenStream {
    let mut element = TokenStream::new();
    for token in stream {
        if is_punct(&token, ';') {
            break;
        }
        element.extend([token]);
    }
    element
}

fn is_punct(token: &TokenTree, ch: char) -> bool {
    matches!(token, TokenTree::Punct(punct) if punct.as_char() == ch)
}

fn is_punct_at(tokens: &[TokenTree], index: usize, ch: char) -> bool {
    tokens.get(index).is_some_and(|token| is_punct(token, ch))
}
