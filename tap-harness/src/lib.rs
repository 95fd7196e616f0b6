//! Tap devices in namespaces created by this harness (placeholder).
