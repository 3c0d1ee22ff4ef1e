//! `textDocument/codeAction`: the list of Wellspring actions, instantly. The model runs only when
//! one is chosen (`codeAction/resolve`, or a command for clients without resolve support).

use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::*;

use super::document_range;
use crate::assist::actions::ActionKind;
use crate::lsp::ext::{self, CodeActionData, RangeArgs};
use crate::lsp::state::EngineState;
use crate::lsp::Server;

fn action_kind(kind: ActionKind) -> CodeActionKind {
    match kind {
        ActionKind::Fix => CodeActionKind::QUICKFIX,
        ActionKind::Explain => CodeActionKind::new("refactor.explain.wellspring"),
        ActionKind::Document => CodeActionKind::new("refactor.rewrite.wellspring.document"),
        ActionKind::WriteTests => CodeActionKind::new("refactor.rewrite.wellspring.tests"),
        ActionKind::Simplify => CodeActionKind::new("refactor.rewrite.wellspring.simplify"),
        ActionKind::Instruct => CodeActionKind::new("refactor.rewrite.wellspring.instruct"),
    }
}

fn wanted(only: Option<&[CodeActionKind]>, kind: &CodeActionKind) -> bool {
    only.is_none_or(|only| {
        only.iter().any(|prefix| {
            kind.as_str() == prefix.as_str()
                || kind.as_str().starts_with(&format!("{}.", prefix.as_str()))
        })
    })
}

fn argument<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("argument types serialise")
}

pub(crate) async fn handle(
    server: &Server,
    params: CodeActionParams,
) -> Result<Option<CodeActionResponse>> {
    let uri = params.text_document.uri.clone();
    let (document, byte_range) = document_range(server, uri.as_str(), params.range)?;
    if matches!(
        server.state.engine_state(),
        EngineState::Disabled | EngineState::NoModel(_)
    ) {
        return Ok(None);
    }
    let diagnostics: Vec<String> = params
        .context
        .diagnostics
        .iter()
        .map(|diagnostic| {
            format!(
                "line {}: {}",
                u64::from(diagnostic.range.start.line) + 1,
                diagnostic.message
            )
        })
        .collect();
    let only = params.context.only.as_deref();
    let support = server.state.client_support();
    let range_args = RangeArgs {
        text_document: TextDocumentIdentifier { uri: uri.clone() },
        range: params.range,
    };
    let mut actions = Vec::new();
    for kind in ActionKind::ALL {
        let code_action_kind = action_kind(kind);
        // "Edit with instruction…" needs the client to ask for the instruction.
        if !wanted(only, &code_action_kind)
            || (kind == ActionKind::Instruct && !support.instruct_prompt)
        {
            continue;
        }
        let mut action = CodeAction {
            title: kind.title().to_owned(),
            kind: Some(code_action_kind),
            ..CodeAction::default()
        };
        match kind {
            ActionKind::Explain => {
                action.command = Some(Command::new(
                    kind.title().to_owned(),
                    ext::COMMAND_EXPLAIN.to_owned(),
                    Some(vec![argument(&range_args)]),
                ));
            }
            ActionKind::Instruct => {
                action.command = Some(Command::new(
                    kind.title().to_owned(),
                    ext::COMMAND_INSTRUCT_PROMPT.to_owned(),
                    Some(vec![argument(&range_args)]),
                ));
            }
            _ => {
                let data = CodeActionData {
                    action: kind.id().to_owned(),
                    uri: uri.as_str().to_owned(),
                    range: params.range,
                    version: document.version,
                    diagnostics: diagnostics.clone(),
                    byte_range: Some((byte_range.start, byte_range.end)),
                    job: None,
                };
                if kind == ActionKind::Fix {
                    action.diagnostics =
                        Some(params.context.diagnostics.clone()).filter(|it| !it.is_empty());
                }
                if support.resolves_code_actions {
                    action.data = Some(argument(&data));
                } else {
                    action.command = Some(Command::new(
                        kind.title().to_owned(),
                        ext::COMMAND_APPLY_ACTION.to_owned(),
                        Some(vec![argument(&data)]),
                    ));
                }
            }
        }
        actions.push(CodeActionOrCommand::CodeAction(action));
    }
    Ok(Some(actions))
}
