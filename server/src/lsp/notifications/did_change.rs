//! `textDocument/didChange`: apply incremental or full changes to the rope and the tree.

use tower_lsp_server::ls_types::{DidChangeTextDocumentParams, TextDocumentContentChangeEvent};

use crate::docs::{Document, TextEdit};
use crate::lsp::convert::{self, Leniency, PositionEncoding};
use crate::lsp::Server;

pub(crate) async fn handle(server: &Server, params: DidChangeTextDocumentParams) {
    let uri = params.text_document.uri.as_str();
    let version = params.text_document.version;
    let encoding = server.state.encoding();
    let mut last_edit_byte = None;
    let result = server.state.documents.update(uri, version, |document| {
        for change in &params.content_changes {
            last_edit_byte = Some(apply_change(document, change, encoding));
        }
        Ok(())
    });
    match result {
        Ok((document, needs_parse)) => {
            tracing::debug!(
                uri,
                version,
                n_changes = params.content_changes.len(),
                "changed"
            );
            if let Some(byte_idx) = last_edit_byte {
                server.state.record_edit(&document, byte_idx);
            }
            if needs_parse {
                server
                    .state
                    .finish_parse_in_background(uri, document.version);
            }
        }
        Err(error) => tracing::warn!("ignoring didChange: {error}"),
    }
}

/// Applies one change and returns the byte where it starts. Positions the spec calls invalid are
/// clamped (and logged) rather than dropped: dropping an edit would leave the server's text
/// further from the client's.
fn apply_change(
    document: &mut Document,
    change: &TextDocumentContentChangeEvent,
    encoding: PositionEncoding,
) -> usize {
    let Some(range) = change.range else {
        document.replace_all(&change.text);
        return 0;
    };
    let bytes = match convert::byte_range(&document.rope, range, encoding, Leniency::Strict) {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(
                uri = document.uri,
                "edit with invalid range ({error}); clamping it"
            );
            convert::byte_range(&document.rope, range, encoding, Leniency::Clamp)
                .expect("clamped conversion cannot fail")
        }
    };
    document.apply_edit(&TextEdit {
        start_byte: bytes.start,
        end_byte: bytes.end,
        text: change.text.clone(),
    });
    bytes.start
}
