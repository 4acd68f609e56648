//! trunkline configuration.
