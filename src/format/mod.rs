//! Text formats and values with no knowledge of tenants: the YAML emitter, `KEY='value'`
//! env files, the variable validators and "did you mean" suggestions.

pub mod envfile;
pub(crate) mod ipv4;
pub(crate) mod suggest;
pub mod validate;
pub mod yaml;
