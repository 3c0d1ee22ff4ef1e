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

/// `wellspring/documentState` request: the server's copy of a document, so a client (or a test)
/// can check that both sides agree after a run of edits.
pub const DOCUMENT_STATE: &str = "wellspring/documentState";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DocumentStateParams {
    pub uri: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DocumentStateResult {
    pub version: i32,
    pub text: String,
    /// The grammar in use, or null when the document is not parsed.
    pub language: Option<String>,
    /// `text`, `tooLargeToParse` or `binary`.
    pub kind: String,
    /// The syntax tree as an S-expression, when there is one.
    pub tree: Option<String>,
}
