//! Structural schema hashes: sensitivity, insensitivity and a golden value.

// The types below exist only to have their schema hashes compared.
#![allow(dead_code)]

use mokosh_derive::Schema;
use mokosh_net::protocol::schema::Schema;

fn hash<T: Schema>() -> u64 {
    T::SCHEMA_HASH
}

/// Independent re-implementation of the documented algorithm (module docs of
/// `mokosh_net::protocol::schema`), written against the spec rather than the
/// library's helpers.
mod spec {
    pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
        let mut state: u64 = 0xcbf29ce484222325;
        for &b in bytes {
            state ^= u64::from(b);
            state = state.wrapping_mul(0x100000001b3);
        }
        state
    }

    /// `str(s)`.
    pub(crate) fn s(text: &str) -> u64 {
        fnv1a64(text.as_bytes())
    }

    /// `H[w1, …, wn]`.
    pub(crate) fn h(words: &[u64]) -> u64 {
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        fnv1a64(&bytes)
    }

    pub(crate) fn leaf(name: &str) -> u64 {
        h(&[s(name)])
    }
}

mod golden {
    use super::Schema;

    #[derive(Schema)]
    pub(crate) struct Golden {
        pub(crate) id: u32,
        pub(crate) tags: Vec<String>,
    }

    #[derive(Schema)]
    pub(crate) enum Shape {
        Empty,
        Pair(u8, bool),
        Named { r#type: char },
    }
}

#[test]
fn golden_struct_matches_spec() {
    use spec::{h, leaf, s};
    let expected = h(&[
        s("struct"),
        s("Golden"),
        s("named"),
        2,
        s("id"),
        leaf("u32"),
        s("tags"),
        h(&[s("Vec"), leaf("String")]),
    ]);
    assert_eq!(hash::<golden::Golden>(), expected);
    // Pinned so that any change to the algorithm (or to the spec
    // re-implementation above) is noticed.
    assert_eq!(hash::<golden::Golden>(), GOLDEN_STRUCT);
}

#[test]
fn golden_enum_matches_spec() {
    use spec::{h, leaf, s};
    let expected = h(&[
        s("enum"),
        s("Shape"),
        3,
        s("Empty"),
        s("unit"),
        s("Pair"),
        s("tuple"),
        2,
        leaf("u8"),
        leaf("bool"),
        s("Named"),
        s("named"),
        1,
        s("type"), // raw identifier prefix stripped
        leaf("char"),
    ]);
    assert_eq!(hash::<golden::Shape>(), expected);
}

#[test]
fn builtins_match_spec() {
    use spec::{h, leaf, s};
    assert_eq!(hash::<u8>(), leaf("u8"));
    assert_eq!(hash::<()>(), leaf("()"));
    assert_eq!(hash::<String>(), leaf("String"));
    assert_eq!(hash::<Option<i64>>(), h(&[s("Option"), leaf("i64")]));
    assert_eq!(hash::<Box<f32>>(), h(&[s("Box"), leaf("f32")]));
    assert_eq!(hash::<[u16; 4]>(), h(&[s("array"), 4, leaf("u16")]));
    assert_eq!(
        hash::<(u8, char, bool)>(),
        h(&[s("tuple"), 3, leaf("u8"), leaf("char"), leaf("bool")])
    );
    assert_eq!(
        hash::<std::collections::HashMap<String, u64>>(),
        h(&[s("HashMap"), leaf("String"), leaf("u64")])
    );
    assert_eq!(
        hash::<std::collections::BTreeSet<i8>>(),
        h(&[s("BTreeSet"), leaf("i8")])
    );
    assert_eq!(
        hash::<std::collections::VecDeque<u8>>(),
        h(&[s("VecDeque"), leaf("u8")])
    );
}

/// Pinned value of `golden::Golden::SCHEMA_HASH`.
const GOLDEN_STRUCT: u64 = 0x65f610147bdb8e04;

mod field_order {
    pub(crate) mod a {
        #[derive(mokosh_derive::Schema)]
        pub(crate) struct Msg {
            pub(crate) x: u8,
            pub(crate) y: u16,
        }
    }
    pub(crate) mod b {
        #[derive(mokosh_derive::Schema)]
        pub(crate) struct Msg {
            pub(crate) y: u16,
            pub(crate) x: u8,
        }
    }
}

mod field_name {
    pub(crate) mod a {
        #[derive(mokosh_derive::Schema)]
        pub(crate) struct Msg {
            pub(crate) x: u8,
        }
    }
    pub(crate) mod b {
        #[derive(mokosh_derive::Schema)]
        pub(crate) struct Msg {
            pub(crate) z: u8,
        }
    }
}

mod field_type {
    pub(crate) mod a {
        #[derive(mokosh_derive::Schema)]
        pub(crate) struct Msg {
            pub(crate) x: u8,
        }
    }
    pub(crate) mod b {
        #[derive(mokosh_derive::Schema)]
        pub(crate) struct Msg {
            pub(crate) x: i8,
        }
    }
}

mod nested {
    pub(crate) mod a {
        #[derive(mokosh_derive::Schema)]
        pub(crate) struct Inner {
            pub(crate) v: u32,
        }
        #[derive(mokosh_derive::Schema)]
        pub(crate) struct Outer {
            pub(crate) inner: Option<Inner>,
        }
    }
    pub(crate) mod b {
        #[derive(mokosh_derive::Schema)]
        pub(crate) struct Inner {
            pub(crate) v: u64,
        }
        #[derive(mokosh_derive::Schema)]
        pub(crate) struct Outer {
            pub(crate) inner: Option<Inner>,
        }
    }
}

mod variants {
    pub(crate) mod base {
        #[derive(mokosh_derive::Schema)]
        pub(crate) enum E {
            A,
            B(u8),
        }
    }
    pub(crate) mod renamed {
        #[derive(mokosh_derive::Schema)]
        pub(crate) enum E {
            A,
            C(u8),
        }
    }
    pub(crate) mod reordered {
        #[derive(mokosh_derive::Schema)]
        pub(crate) enum E {
            B(u8),
            A,
        }
    }
    pub(crate) mod reshaped {
        #[derive(mokosh_derive::Schema)]
        pub(crate) enum E {
            A,
            B { v: u8 },
        }
    }
    pub(crate) mod unit_vs_empty_tuple {
        #[derive(mokosh_derive::Schema)]
        pub(crate) enum E {
            A(),
            B(u8),
        }
    }
    pub(crate) mod extra {
        #[derive(mokosh_derive::Schema)]
        pub(crate) enum E {
            A,
            B(u8),
            C,
        }
    }
}

mod struct_shapes {
    pub(crate) mod named {
        #[derive(mokosh_derive::Schema)]
        pub(crate) struct S {
            pub(crate) f: u8,
        }
    }
    pub(crate) mod tuple {
        #[derive(mokosh_derive::Schema)]
        pub(crate) struct S(pub(crate) u8);
    }
    pub(crate) mod unit {
        #[derive(mokosh_derive::Schema)]
        pub(crate) struct S;
    }
    pub(crate) mod empty_named {
        #[derive(mokosh_derive::Schema)]
        pub(crate) struct S {}
    }
}

mod type_name {
    #[derive(mokosh_derive::Schema)]
    pub(crate) struct Alpha {
        pub(crate) v: u8,
    }
    #[derive(mokosh_derive::Schema)]
    pub(crate) struct Beta {
        pub(crate) v: u8,
    }
}

mod paths {
    pub(crate) type Bytes = Vec<u8>;

    pub(crate) mod short {
        #[derive(mokosh_derive::Schema)]
        pub(crate) struct Blob {
            pub(crate) data: Vec<u8>,
            pub(crate) map: std::collections::HashMap<u8, String>,
        }
    }
    pub(crate) mod long {
        use std::collections::HashMap;
        #[derive(mokosh_derive::Schema)]
        pub(crate) struct Blob {
            pub(crate) data: ::std::vec::Vec<::core::primitive::u8>,
            pub(crate) map: HashMap<u8, std::string::String>,
        }
    }
    pub(crate) mod aliased {
        #[derive(mokosh_derive::Schema)]
        pub(crate) struct Blob {
            pub(crate) data: super::Bytes,
            pub(crate) map: std::collections::HashMap<u8, String, std::hash::RandomState>,
        }
    }
}

mod arrays {
    pub(crate) mod three {
        #[derive(mokosh_derive::Schema)]
        pub(crate) struct Key(pub(crate) [u8; 3]);
    }
    pub(crate) mod four {
        #[derive(mokosh_derive::Schema)]
        pub(crate) struct Key(pub(crate) [u8; 4]);
    }
}

mod generics {
    #[derive(mokosh_derive::Schema)]
    pub(crate) struct Wrapper<T> {
        pub(crate) inner: T,
    }

    #[derive(mokosh_derive::Schema)]
    pub(crate) struct Sized<const N: usize> {
        pub(crate) data: [u8; N],
    }

    #[derive(mokosh_derive::Schema)]
    pub(crate) enum Either<L, R>
    where
        L: Clone,
    {
        Left(L),
        Right(R),
    }
}

#[test]
fn field_order_changes_hash() {
    assert_ne!(hash::<field_order::a::Msg>(), hash::<field_order::b::Msg>());
}

#[test]
fn field_name_changes_hash() {
    assert_ne!(hash::<field_name::a::Msg>(), hash::<field_name::b::Msg>());
}

#[test]
fn field_type_changes_hash() {
    assert_ne!(hash::<field_type::a::Msg>(), hash::<field_type::b::Msg>());
}

#[test]
fn nested_field_change_propagates() {
    assert_ne!(hash::<nested::a::Inner>(), hash::<nested::b::Inner>());
    assert_ne!(hash::<nested::a::Outer>(), hash::<nested::b::Outer>());
}

#[test]
fn enum_changes_hash() {
    let base = hash::<variants::base::E>();
    for (what, other) in [
        ("variant name", hash::<variants::renamed::E>()),
        ("variant order", hash::<variants::reordered::E>()),
        ("variant shape", hash::<variants::reshaped::E>()),
        (
            "unit vs empty tuple",
            hash::<variants::unit_vs_empty_tuple::E>(),
        ),
        ("extra variant", hash::<variants::extra::E>()),
    ] {
        assert_ne!(base, other, "{what} must change the hash");
    }
}

#[test]
fn struct_shapes_differ() {
    let hashes = [
        hash::<struct_shapes::named::S>(),
        hash::<struct_shapes::tuple::S>(),
        hash::<struct_shapes::unit::S>(),
        hash::<struct_shapes::empty_named::S>(),
    ];
    for (i, a) in hashes.iter().enumerate() {
        for b in &hashes[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn type_name_is_part_of_hash() {
    assert_ne!(hash::<type_name::Alpha>(), hash::<type_name::Beta>());
}

#[test]
fn module_path_is_not_part_of_hash() {
    // Same name, same structure, different modules.
    assert_eq!(hash::<field_name::a::Msg>(), hash::<field_type::a::Msg>());
}

#[test]
fn path_spelling_and_aliases_do_not_matter() {
    assert_eq!(hash::<Vec<u8>>(), hash::<std::vec::Vec<u8>>());
    assert_eq!(hash::<Vec<u8>>(), hash::<paths::Bytes>());
    let short = hash::<paths::short::Blob>();
    assert_eq!(short, hash::<paths::long::Blob>());
    assert_eq!(short, hash::<paths::aliased::Blob>());
}

#[test]
fn array_length_matters() {
    assert_ne!(hash::<[u8; 3]>(), hash::<[u8; 4]>());
    assert_ne!(hash::<arrays::three::Key>(), hash::<arrays::four::Key>());
    assert_ne!(hash::<generics::Sized<3>>(), hash::<generics::Sized<4>>());
    assert_eq!(hash::<generics::Sized<3>>(), {
        // Same as a non-generic struct with the same name and layout.
        mod same {
            #[derive(mokosh_derive::Schema)]
            pub(crate) struct Sized {
                pub(crate) data: [u8; 3],
            }
        }
        hash::<same::Sized>()
    });
}

#[test]
fn generic_instantiations_differ() {
    assert_ne!(
        hash::<generics::Wrapper<u8>>(),
        hash::<generics::Wrapper<u16>>()
    );
    assert_eq!(
        hash::<generics::Wrapper<Vec<u8>>>(),
        hash::<generics::Wrapper<std::vec::Vec<u8>>>()
    );
    assert_ne!(
        hash::<generics::Either<u8, u16>>(),
        hash::<generics::Either<u16, u8>>()
    );
}

#[test]
fn container_tags_are_nominal() {
    use std::collections::{BTreeMap, HashMap, VecDeque};
    assert_ne!(hash::<Vec<u8>>(), hash::<VecDeque<u8>>());
    assert_ne!(hash::<HashMap<u8, u8>>(), hash::<BTreeMap<u8, u8>>());
    assert_ne!(hash::<u8>(), hash::<Box<u8>>());
    assert_ne!(hash::<(u8, u16)>(), hash::<(u16, u8)>());
    assert_ne!(hash::<Option<Option<u8>>>(), hash::<Option<u8>>());
}

#[test]
fn hash_is_usable_in_const_context() {
    const H: u64 = <golden::Golden as Schema>::SCHEMA_HASH;
    assert_eq!(H, hash::<golden::Golden>());
}
