//! Custom methods and notifications (`wellspring/…`). Documented in `docs/lsp-extensions.md`
//! and mirrored in `editors/vscode/src/lsp_ext.ts`; a test hashes this file so the three stay
//! in step.

use serde::{Deserialize, Serialize};

/// `wellspring/serverInfo` request: what the server is running.
pub const SERVER_INFO: &str = "wellspring/serverInfo";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfoResult {
    pub version: String,
    pub position_encoding: String,
    pub open_documents: usize,
}
