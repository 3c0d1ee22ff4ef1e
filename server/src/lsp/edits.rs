//! Edits the model writes for code actions and instructions, from the range the user chose to
//! the `WorkspaceEdit` the client applies.
//!
//! The model takes seconds to minutes, and the user keeps typing meanwhile. So an edit is always
//! tied to the version of the document it was computed on: before it is sent, it is moved through
//! the changes made since (or refused when they touched the edited code), and it goes out as a
//! versioned `documentChanges` edit when the client takes those, so the client itself refuses it
//! if the text moved on again in flight.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tower_lsp_server::jsonrpc::{self, Result};
use tower_lsp_server::ls_types::request::Request;
use tower_lsp_server::ls_types::*;

use super::ext::CodeActionData;
use super::progress::Progress;
use super::requests::{byte_range_in, engine_unavailable, open_document};
use super::{convert, invalid_params, show_failure, Server};
use crate::assist::actions::{self, ActionKind, Edit};
use crate::docs::{self, Document};

/// An action's edit, with the snapshot of the document it was computed on.
#[derive(Clone)]
pub(crate) struct ComputedEdit {
    pub kind: ActionKind,
    pub document: Arc<Document>,
    /// What the action was asked to work on, in bytes of `document`, and its instruction.
    pub selection: Range<usize>,
    pub instruction: Option<String>,
    pub edit: Edit,
}

/// How many edits the client refused are kept for a second try.
const MAX_REFUSED_EDITS: usize = 4;

/// The action, document and code that a code action offered earlier (its `data`) stands for now:
/// when the document has changed since it was offered, the range is moved through the changes,
/// or refused when they touched it.
pub(crate) fn offered_target(
    server: &Server,
    data: &CodeActionData,
) -> Result<(ActionKind, Arc<Document>, Range<usize>)> {
    let kind = ActionKind::from_id(&data.action)
        .ok_or_else(|| invalid_params(format!("unknown action {:?}", data.action)))?;
    let document = open_document(server, &data.uri)?;
    if document.version == data.version {
        // The same snapshot whose version was checked: the store may hold a newer one by now.
        let selection = byte_range_in(server, &document, data.range)?;
        return Ok((kind, document, selection));
    }
    let moved = data
        .byte_range
        .zip(document.history.since(data.version))
        .and_then(|((start_byte, end_byte), spans)| docs::move_range(start_byte..end_byte, &spans))
        // The range came back from the client: it must still fit the text, on character
        // boundaries, before anything slices the rope with it.
        .filter(|moved| {
            moved.end <= document.rope.len_bytes()
                && is_char_boundary(&document, moved.start)
                && is_char_boundary(&document, moved.end)
        })
        .ok_or_else(|| {
            invalid_params(
                "the code changed since the action was offered; ask for code actions again",
            )
        })?;
    Ok((kind, document, moved))
}

fn is_char_boundary(document: &Document, byte_idx: usize) -> bool {
    document
        .rope
        .char_to_byte(document.rope.byte_to_char(byte_idx))
        == byte_idx
}

/// Runs `kind` on `selection` of `document` and returns its edit, showing progress meanwhile.
pub(crate) async fn compute(
    server: &Server,
    kind: ActionKind,
    document: Arc<Document>,
    selection: Range<usize>,
    diagnostics: &[String],
    instruction: Option<&str>,
) -> Result<ComputedEdit> {
    if let Some(refused) = take_refused(server, kind, &document, &selection, instruction) {
        tracing::info!(
            action = kind.id(),
            "applying the edit the client refused before instead of asking the model again"
        );
        return Ok(refused);
    }
    let engine = server
        .state
        .engine()
        .ok_or_else(|| engine_unavailable(server))?;
    let snapshot = server.state.context_snapshot(Arc::clone(&document));
    let progress = Progress::start(server, kind.title(), None);
    progress.report("the model is writing the edit");
    let edit = actions::run(
        &engine,
        &snapshot,
        kind,
        selection.clone(),
        diagnostics,
        instruction,
        server.state.config().chat.max_edit_tokens,
    )
    .await;
    let edit = match edit {
        Ok(edit) => {
            progress.finish("done").await;
            edit
        }
        Err(error) => {
            // The failure goes in the progress's last message too: some clients (Helix) clear
            // their status line when a progress ends, hiding a message shown just before.
            let message = error.to_string();
            progress.finish(&message).await;
            return Err(jsonrpc::Error {
                code: jsonrpc::ErrorCode::ServerError(super::EDIT_NOT_WRITTEN),
                message: format!("{}: {message}", kind.name()).into(),
                data: None,
            });
        }
    };
    Ok(ComputedEdit {
        kind,
        document,
        selection,
        instruction: instruction.map(str::to_owned),
        edit,
    })
}

/// The edit the client refused for the same action on the same code, if there is one: running
/// the action again then applies it at once. This is what makes actions usable in clients that
/// accept a server's edit only shortly after running a command (Kate: two seconds), when the
/// model takes longer than that.
fn take_refused(
    server: &Server,
    kind: ActionKind,
    document: &Document,
    selection: &Range<usize>,
    instruction: Option<&str>,
) -> Option<ComputedEdit> {
    let mut refused = server.state.refused_edits();
    let same_action = |candidate: &ComputedEdit| {
        candidate.kind == kind
            && candidate.instruction.as_deref() == instruction
            && candidate.document.uri == document.uri
            && candidate.document.opening == document.opening
            && document
                .history
                .since(candidate.document.version)
                .and_then(|spans| docs::move_range(candidate.selection.clone(), &spans))
                .is_some_and(|moved| moved == *selection)
    };
    let position = refused.iter().position(same_action)?;
    refused.remove(position)
}

/// Keeps an edit the client refused for [`take_refused`].
fn keep_refused(server: &Server, computed: &ComputedEdit) {
    let mut refused = server.state.refused_edits();
    if refused.len() == MAX_REFUSED_EDITS {
        refused.pop_front();
    }
    refused.push_back(computed.clone());
}

/// The `WorkspaceEdit` for `computed` against the document as the client has it now.
pub(crate) fn workspace_edit(server: &Server, computed: &ComputedEdit) -> Result<WorkspaceEdit> {
    let refused = |why: &str| {
        jsonrpc::Error::invalid_params(format!(
            "{}: the edit was not applied because {why}",
            computed.kind.name()
        ))
    };
    let uri = computed.document.uri.as_str();
    let current = server
        .state
        .documents
        .get(uri)
        .ok_or_else(|| refused("the document was closed"))?;
    let range = if current.opening != computed.document.opening {
        return Err(refused("the document was closed and opened again"));
    } else if current.version == computed.document.version {
        computed.edit.range.clone()
    } else {
        let spans = current
            .history
            .since(computed.document.version)
            .ok_or_else(|| refused("the document changed too much meanwhile"))?;
        let moved = docs::move_range(computed.edit.range.clone(), &spans)
            .ok_or_else(|| refused("the code it rewrites was edited meanwhile; run it again"))?;
        tracing::info!(
            uri,
            from_version = computed.document.version,
            to_version = current.version,
            "moved an edit past changes made while the model wrote it"
        );
        moved
    };
    let text_edit = TextEdit {
        range: convert::range(&current.rope, range, server.state.encoding()),
        new_text: computed.edit.new_text.clone(),
    };
    let uri: Uri = uri
        .parse()
        .map_err(|_| invalid_params(format!("invalid uri {uri}")))?;
    if server.state.client_support().document_changes {
        Ok(WorkspaceEdit {
            document_changes: Some(DocumentChanges::Edits(vec![TextDocumentEdit {
                text_document: OptionalVersionedTextDocumentIdentifier {
                    uri,
                    version: Some(current.version),
                },
                edits: vec![OneOf::Left(text_edit)],
            }])),
            ..WorkspaceEdit::default()
        })
    } else {
        Ok(WorkspaceEdit {
            changes: Some(HashMap::from([(uri, vec![text_edit])])),
            ..WorkspaceEdit::default()
        })
    }
}

/// `workspace/applyEdit` with a result that may be `null`: some clients answer so instead of
/// `{ "applied": … }`.
enum LenientApplyEdit {}

impl Request for LenientApplyEdit {
    type Params = ApplyWorkspaceEditParams;
    type Result = Option<ApplyWorkspaceEditResponse>;
    const METHOD: &'static str = "workspace/applyEdit";
}

/// Moves `computed` onto the current text and asks the client to apply it.
pub(crate) async fn apply(server: &Server, computed: &ComputedEdit) -> Result<WorkspaceEdit> {
    let edit = workspace_edit(server, computed)?;
    let label = computed.kind.title();
    tracing::info!(label, "asking the client to apply an edit");
    let params = ApplyWorkspaceEditParams {
        label: Some(label.to_owned()),
        edit: edit.clone(),
    };
    match server
        .client
        .send_request::<LenientApplyEdit>(params)
        .await?
    {
        Some(response) if !response.applied => {
            let reason = response
                .failure_reason
                .filter(|reason| !reason.trim().is_empty())
                .unwrap_or_else(|| "the editor refused it".to_owned());
            keep_refused(server, computed);
            Err(invalid_params(format!(
                "{}: the edit was not applied ({reason}); run the action again to apply it without waiting for the model",
                computed.kind.name()
            )))
        }
        Some(_) => Ok(edit),
        None => {
            tracing::info!(
                label,
                "the client answered applyEdit with null; taking it as applied"
            );
            Ok(edit)
        }
    }
}

/// A code action's edit being written on a task of its own, so `codeAction/resolve` can answer
/// before the model is done. Dropping the job stops the model.
pub(crate) struct ActionJob {
    task: JoinHandle<Result<ComputedEdit>>,
}

impl ActionJob {
    pub(crate) fn spawn(
        server: &Server,
        kind: ActionKind,
        document: Arc<Document>,
        selection: Range<usize>,
        diagnostics: Vec<String>,
    ) -> ActionJob {
        let server = server.clone();
        let task = tokio::spawn(async move {
            compute(&server, kind, document, selection, &diagnostics, None).await
        });
        ActionJob { task }
    }

    /// The edit, once the model is done.
    pub(crate) async fn finish(&mut self) -> Result<ComputedEdit> {
        match (&mut self.task).await {
            Ok(result) => result,
            Err(error) => Err(jsonrpc::Error {
                code: jsonrpc::ErrorCode::InternalError,
                message: format!("the code action stopped: {error}").into(),
                data: None,
            }),
        }
    }

    /// Lets the job finish in the background and apply its edit with `workspace/applyEdit`
    /// (a failure is shown to the user). The edit applies itself rather than waiting for the
    /// client to run the command resolve returned: Helix 25.07 runs the command of the action as
    /// first listed, not of the resolved one, and would otherwise lose the edit.
    pub(crate) fn apply_when_done(mut self, server: &Server) {
        let server = server.clone();
        tokio::spawn(async move {
            let applied = match self.finish().await {
                Ok(computed) => apply(&server, &computed).await.map(drop),
                Err(error) => Err(error),
            };
            if let Err(error) = applied {
                show_failure(&server, &error).await;
            }
        });
    }
}

impl Drop for ActionJob {
    fn drop(&mut self) {
        self.task.abort();
    }
}
