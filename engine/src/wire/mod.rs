//! Wire formats (placeholder until the wire layer lands).
