//! Keyed hashes computed by Lethe where the engine has no SHA-256.
