//! The configuration crate's tests, one module per concern; the helpers they share here.

use super::*;
use std::sync::Arc;

const ACC: &str = include_str!("../../../examples/b2bua.yaml");

fn err(src: &str) -> ConfigError {
    match from_yaml(src, "t.yaml") {
        Ok(_) => panic!("expected an error for:\n{src}"),
        Err(e) => e,
    }
}

/// Assert an error at line:column whose message contains `needle`.
#[track_caller]
fn assert_err(src: &str, line: usize, column: usize, needle: &str) {
    let e = err(src);
    assert_eq!((e.line, e.column), (line, column), "position of: {e}");
    assert!(
        e.message.contains(needle),
        "message of: {e} (wanted `{needle}`)"
    );
    assert!(
        e.to_string()
            .starts_with(&format!("t.yaml:{line}:{column}: ")),
        "{e}"
    );
}

fn q(to_user: &str) -> RouteQuery<'_> {
    RouteQuery {
        to_user,
        from_user: "alice",
        request_uri: "sip:x@example.com",
        source_trunk: None,
        source_ip: None,
        pai_user: None,
        diversion_user: None,
    }
}

mod big_plan;
mod chunks;
mod codecs;
mod dual_stack;
mod errors;
mod fast_reader;
mod gateways;
mod limits;
mod loading;
mod matcher;
mod plan_semantics;
mod registrar;
mod trunk_tls;
use big_plan::big_plan_yaml;
use plan_semantics::{plan, route};
