//! The deterministic simulator (placeholder until the simulator lands).
