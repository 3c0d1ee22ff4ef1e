//! `wellspring/documentState`: the server's copy of one document.

use tower_lsp_server::jsonrpc::Result;

use crate::docs::DocumentKind;
use crate::lsp::ext::{DocumentStateParams, DocumentStateResult};
use crate::lsp::{invalid_params, Server};

pub(crate) async fn handle(
    server: &Server,
    params: DocumentStateParams,
) -> Result<DocumentStateResult> {
    let document = server
        .state
        .documents
        .get(&params.uri)
        .ok_or_else(|| invalid_params(format!("document {} is not open", params.uri)))?;
    let kind = match document.kind {
        DocumentKind::Text => "text",
        DocumentKind::TooLargeToParse => "tooLargeToParse",
        DocumentKind::Binary => "binary",
    };
    Ok(DocumentStateResult {
        version: document.version,
        text: document.rope.to_string(),
        language: document.language.map(|language| language.name().to_owned()),
        kind: kind.to_owned(),
        tree: document.tree.as_ref().map(crate::syntax::node_listing),
    })
}
