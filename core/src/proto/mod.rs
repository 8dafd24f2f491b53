//! The client protocol: the incremental parser for what clients send and the encoders for
//! what the server sends.

pub mod encode;
pub mod info;
pub mod parser;
pub mod replay;

pub use parser::{ClientOp, ParseError, Parser, ParserConfig};
