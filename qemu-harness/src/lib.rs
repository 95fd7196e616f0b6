//! QEMU guests against a passt socket (placeholder).
