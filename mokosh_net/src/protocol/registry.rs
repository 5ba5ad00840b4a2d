//! (temporary minimal definition; replaced by the schema branch)
#![allow(missing_docs)]
use std::collections::BTreeMap;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageInfo {
    pub route_id: u16,
    pub name: &'static str,
    pub schema_hash: u64,
}
#[derive(Debug, Clone, Default)]
pub struct MessageRegistry {
    routes: BTreeMap<u16, MessageInfo>,
}
impl MessageRegistry {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn insert_for_tests(&mut self, info: MessageInfo) {
        self.routes.insert(info.route_id, info);
    }
    pub fn get(&self, route_id: u16) -> Option<&MessageInfo> {
        self.routes.get(&route_id)
    }
    pub fn protocol_hash(&self) -> u64 {
        self.routes.values().fold(0xcbf29ce484222325, |h, i| {
            (h ^ i.schema_hash ^ u64::from(i.route_id)).wrapping_mul(0x100000001b3)
        })
    }
}
