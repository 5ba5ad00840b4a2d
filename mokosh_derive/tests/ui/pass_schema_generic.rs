use mokosh_derive::Schema;
use mokosh_net::protocol::schema::Schema;
use std::marker::PhantomData;

#[derive(Schema)]
struct Wrapper<T> {
    inner: T,
}

#[derive(Schema)]
struct Tagged<T: Clone, const N: usize>
where
    T: Default,
{
    items: [T; N],
    marker: PhantomData<T>,
}

#[derive(Schema)]
enum Either<L, R> {
    Left(L),
    Right { value: R },
}

const NESTED: u64 = <Wrapper<Option<Wrapper<u8>>> as Schema>::SCHEMA_HASH;

fn main() {
    assert_ne!(NESTED, <Wrapper<Option<u8>> as Schema>::SCHEMA_HASH);
    assert_ne!(
        <Tagged<u8, 2> as Schema>::SCHEMA_HASH,
        <Tagged<u8, 3> as Schema>::SCHEMA_HASH
    );
    assert_ne!(
        <Wrapper<u8> as Schema>::SCHEMA_HASH,
        <Wrapper<u16> as Schema>::SCHEMA_HASH
    );
    assert_ne!(
        <Either<u8, String> as Schema>::SCHEMA_HASH,
        <Either<String, u8> as Schema>::SCHEMA_HASH
    );
}
