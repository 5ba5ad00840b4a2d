//! Compile-time behaviour of `#[derive(Schema)]` and `#[derive(GameMessage)]`.
//!
//! Regenerate expected output with `TRYBUILD=overwrite cargo test -p mokosh_derive
//! --test derive_ui`, then review every changed `.stderr` by hand.

#[test]
fn derive_ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass_*.rs");
    t.compile_fail("tests/ui/fail_*.rs");
}
