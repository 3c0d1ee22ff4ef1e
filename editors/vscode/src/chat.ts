// The chat views: one read-only markdown document per chat, showing the answer the server
// streams (`wellspring/chatProgress`) as it arrives. Starting a chat and the client that carries
// the stream stay in extension.ts.

import * as vscode from "vscode";
import * as ext from "./lsp_ext";

interface ChatView {
  uri: vscode.Uri;
  title: string;
  text: string;
  chunks: number;
  done: boolean;
  note?: string;
  /** What the server left out of the conversation to fit the model's context. */
  notice?: string;
}

/** Read-only markdown documents that show chat streams as they arrive, one per chatId. */
export class ChatViews implements vscode.TextDocumentContentProvider {
  static readonly scheme = "wellspring-chat";
  private readonly views = new Map<string, ChatView>();
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;
  private readonly dirty = new Set<ChatView>();
  private flushTimer: NodeJS.Timeout | undefined;

  /** `output`: the extension's log, where each finished stream is counted (the workbench test reads it). */
  constructor(private readonly output: vscode.LogOutputChannel) {}

  provideTextDocumentContent(uri: vscode.Uri): string {
    const view = this.views.get(uri.query);
    if (!view) return "This chat is no longer available.\n";
    const tail = view.done ? "" : " …";
    const note = view.note ? `\n\n_(${view.note})_` : "";
    const notice = view.notice ? `_(${view.notice})_\n\n` : "";
    return `## ${view.title}\n\n${notice}${view.text}${tail}${note}\n`;
  }

  /** The view of a stream, opened beside the editor for a chatId not seen before. */
  open(chatId: string, title: string): ChatView {
    let view = this.views.get(chatId);
    if (!view) {
      const name = title.replace(/[^\w .,?!-]+/g, " ").trim().slice(0, 48) || "chat";
      const uri = vscode.Uri.from({ scheme: ChatViews.scheme, path: `/${this.views.size + 1} ${name}.md`, query: chatId });
      view = { uri, title, text: "", chunks: 0, done: false };
      this.views.set(chatId, view);
      const options = { viewColumn: vscode.ViewColumn.Beside, preview: false, preserveFocus: true };
      void vscode.workspace.openTextDocument(uri).then((document) => vscode.window.showTextDocument(document, options));
    }
    return view;
  }

  /** Keeps the end of a growing answer in sight. */
  follow(document: vscode.TextDocument): void {
    if (document.uri.scheme !== ChatViews.scheme) return;
    const end = document.lineAt(document.lineCount - 1).range.end;
    for (const editor of vscode.window.visibleTextEditors) {
      if (editor.document === document) editor.revealRange(new vscode.Range(end, end));
    }
  }

  progress(params: ext.ChatProgressParams): void {
    this.append(this.open(params.chatId, params.title ?? "Wellspring"), params);
  }

  finish(chatId: string, end: { text?: string; note?: string }): void {
    const view = this.views.get(chatId);
    if (!view) return;
    view.text = end.text ?? view.text;
    view.note = end.note;
    this.end(view);
  }

  private append(view: ChatView, params: ext.ChatProgressParams): void {
    if (view.done) return; // pieces that were in flight when the chat was cancelled
    view.notice ??= params.notice;
    view.text += params.delta;
    view.chunks += 1;
    if (params.done) this.end(view);
    else this.schedule(view);
  }

  private end(view: ChatView): void {
    if (!view.done) this.output.info(`chat ${view.uri.query}: ${view.chunks} chunks streamed, ${view.text.length} characters`);
    view.done = true;
    this.schedule(view);
  }

  // Coalesces the many small deltas of a stream into one refresh per 40 ms.
  private schedule(view: ChatView): void {
    this.dirty.add(view);
    this.flushTimer ??= setTimeout(() => {
      this.flushTimer = undefined;
      for (const dirty of this.dirty) this.changed.fire(dirty.uri);
      this.dirty.clear();
    }, 40);
  }
}
