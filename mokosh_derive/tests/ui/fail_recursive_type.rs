use mokosh_derive::Schema;

#[derive(Schema)]
struct Node {
    value: u32,
    children: Vec<Node>,
}

#[derive(Schema)]
enum List {
    Nil,
    Cons(u8, Box<Self>),
}

fn main() {}
