//! `textDocument/didSave`: refresh the saved file's definitions in the workspace index.

use tower_lsp_server::ls_types::DidSaveTextDocumentParams;

use crate::lsp::Server;

pub(crate) async fn handle(server: &Server, params: DidSaveTextDocumentParams) {
    let uri = &params.text_document.uri;
    let Some(document) = server.state.documents.get(uri.as_str()) else {
        tracing::warn!(
            uri = uri.as_str(),
            "didSave for a document that is not open"
        );
        return;
    };
    let (Some(path), Some(language), Some(tree)) = (
        uri.to_file_path(),
        document.language,
        document.tree.as_ref(),
    ) else {
        return;
    };
    server
        .state
        .index()
        .update_tree(&path, language, &document.rope, tree);
}
