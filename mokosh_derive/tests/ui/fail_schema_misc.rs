use mokosh_derive::Schema;

struct NotSchema;

#[derive(Schema)]
struct HasForeignField {
    ok: u8,
    bad: Vec<NotSchema>,
}

#[derive(Schema)]
union Bits {
    a: u32,
    b: f32,
}

fn main() {}
