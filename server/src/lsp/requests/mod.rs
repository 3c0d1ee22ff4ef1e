//! One file per request method.

pub(super) mod document_state;
pub(super) mod initialize;
pub(super) mod server_info;
pub(super) mod shutdown;
