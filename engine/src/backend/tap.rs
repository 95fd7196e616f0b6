//! stub
/// stub
pub struct Tap;
