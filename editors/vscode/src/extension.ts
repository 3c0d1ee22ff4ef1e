// The Wellspring extension: starts the `wellspring` language server, passes settings, and shows
// what the server streams (chat answers through the views in chat.ts). Everything clever
// (prompts, the model, edits) lives in the server; inline completion and code actions come
// straight from vscode-languageclient.

import { randomUUID } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import * as vscode from "vscode";
import * as lc from "vscode-languageclient/node";
import { ChatViews } from "./chat";
import * as ext from "./lsp_ext";
import { chooseModel, healthReport, onStatus as followModelStatus, type ModelChoiceHost } from "./model_choice";

let client: lc.LanguageClient | undefined;
let output: vscode.LogOutputChannel;
let statusItem: vscode.StatusBarItem;
let chats: ChatViews;
let extensionPath = "";
/** The server binary in use and where it came from, for the log and the health check. */
let serverInUse = { command: "wellspring", source: "PATH" };
const modelChoice: ModelChoiceHost = {
  downloadModel: async () => {
    if (!client?.isRunning()) throw new Error("the server is not running");
    await client.sendRequest(lc.ExecuteCommandRequest.type, { command: ext.DOWNLOAD_MODEL_COMMAND, arguments: [] });
  },
  get output() {
    return output;
  },
};

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  extensionPath = context.extensionPath;
  output = vscode.window.createOutputChannel("Wellspring", { log: true });
  statusItem = vscode.window.createStatusBarItem("wellspring.status", vscode.StatusBarAlignment.Right, 100);
  statusItem.name = "Wellspring";
  statusItem.command = "wellspring.showMenu";
  chats = new ChatViews(output);
  const command = vscode.commands.registerCommand;
  context.subscriptions.push(
    output,
    statusItem,
    vscode.workspace.registerTextDocumentContentProvider(ChatViews.scheme, chats),
    vscode.workspace.onDidChangeTextDocument((event) => chats.follow(event.document)),
    vscode.window.onDidChangeActiveTextEditor((editor) => warmSoon(editor, 0)),
    vscode.window.onDidChangeTextEditorSelection((event) => warmSoon(event.textEditor, WARM_AFTER_MS)),
    command("wellspring.chatWithSelection", chatWithSelection),
    command(ext.INSTRUCT_PROMPT_COMMAND, instructPrompt),
    command("wellspring.showMenu", showMenu),
    command("wellspring.toggleCompletion", toggleCompletion),
    command("wellspring.showLog", () => output.show(true)),
    command("wellspring.restartServer", restart),
    command("wellspring.serverInfo", healthCheck),
    command("wellspring.chooseModel", () => chooseModel(modelChoice)),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration("wellspring.serverPath")) {
        void restart();
      } else if (event.affectsConfiguration("wellspring") && client?.isRunning()) {
        void client.sendNotification(lc.DidChangeConfigurationNotification.type, { settings: serverSettings() });
      }
    }),
  );
  statusItem.show();
  await start();
}

export function deactivate(): Thenable<void> | undefined {
  return client?.stop();
}

// VS Code setting → [section, key] of the server's config (docs/configuration.md).
const SETTINGS: [string, "model" | "completion" | "engine", string][] = [
  ["model.path", "model", "path"],
  ["model.chatPath", "model", "chat_path"],
  ["model.nGpuLayers", "model", "n_gpu_layers"],
  ["model.nCtx", "model", "n_ctx"],
  ["completion.enabled", "completion", "enabled"],
  ["completion.maxTokens", "completion", "max_tokens"],
  ["completion.debounceMs", "completion", "debounce_ms"],
  ["completion.disabledLanguages", "completion", "disabled_languages"],
  ["engine.mode", "engine", "mode"],
];
// Settings sent so far: once a setting has been sent, resetting it sends the default, so the
// server does not keep the old value.
const sent = new Set<string>();

/** The settings the user has set, in the server's shape; unset ones keep the server's value. */
function serverSettings(): ext.Settings {
  const config = vscode.workspace.getConfiguration("wellspring");
  const settings: Record<string, Record<string, unknown>> = {};
  for (const [name, section, key] of SETTINGS) {
    const seen = config.inspect(name);
    const set = [seen?.globalValue, seen?.workspaceValue, seen?.workspaceFolderValue].some((v) => v !== undefined);
    const value = config.get(name);
    // An empty model path keeps the server's choice; an empty chat path means "the same model".
    if ((!set && !sent.has(name)) || (value === "" && name === "model.path")) continue;
    sent.add(name);
    (settings[section] ??= {})[key] = value;
  }
  return settings;
}

/**
 * The server to run: `wellspring.serverPath` when set, else the portable server a platform
 * package carries in server/ (scripts/dist.sh --vsix), else `wellspring` on PATH.
 */
export function serverCommand(configured: string, carriedDir: string): { command: string; source: string } {
  if (configured.trim()) return { command: configured.trim(), source: "wellspring.serverPath" };
  const carried = path.join(carriedDir, "server", "wellspring");
  if (fs.existsSync(carried)) {
    // A package's files may lose their executable bit on the way; the server is ours to fix.
    try {
      fs.accessSync(carried, fs.constants.X_OK);
    } catch {
      fs.chmodSync(carried, 0o755);
    }
    return { command: carried, source: "carried by the extension" };
  }
  return { command: "wellspring", source: "PATH" };
}

async function start(): Promise<void> {
  const resolved = serverCommand(vscode.workspace.getConfiguration("wellspring").get<string>("serverPath") ?? "", extensionPath);
  const command = resolved.command;
  serverInUse = resolved;
  output.info(`server: ${command} (${resolved.source})`);
  // No `transport`: the client would append `--stdio`, and the server speaks stdio anyway.
  const server: lc.Executable = { command, args: ["serve"] };
  sent.clear();
  const options: lc.LanguageClientOptions = {
    documentSelector: [{ scheme: "file" }, { scheme: "untitled" }],
    initializationOptions: serverSettings,
    outputChannel: output,
    // The server's textDocument/completion is the fallback for editors without inline
    // completion; VS Code has it, and asking both would run the model twice per keystroke.
    middleware: { provideCompletionItem: () => undefined },
  };
  const started = new lc.LanguageClient("wellspring", "Wellspring", server, options);
  // Tells the server this client shows wellspring/chatProgress streams and runs the client-side
  // instructPrompt command; other clients get chat through standard LSP and no instruct action.
  started.registerFeature({
    fillClientCapabilities: (capabilities) => {
      capabilities.experimental = { ...(capabilities.experimental as object), wellspring: { chatProgress: true, instructPrompt: true } };
    },
    initialize: () => undefined,
    getState: () => ({ kind: "static" }),
    clear: () => undefined,
  });
  client = started;
  let heardStatus = false;
  let wasReady = false;
  started.onNotification(ext.status, (params) => {
    heardStatus = true;
    showStatus(params);
    followModelStatus(params, modelChoice);
    // Until the model is in, warming has nothing to run on: warm once it is.
    const becameReady = params.state === "ready" && !wasReady;
    wasReady = params.state === "ready";
    if (becameReady && client === started) {
      warmedLines.clear();
      warmSoon(vscode.window.activeTextEditor, 0);
    }
  });
  started.onNotification(ext.chatProgress, (params) => chats.progress(params));
  started.onDidChangeState(({ newState }) => {
    if (newState === lc.State.Stopped && client === started) showStatus({ state: "error", message: "the server stopped; click to restart" });
  });
  showStatus({ state: "loading", message: `starting ${command}` });
  try {
    await started.start();
  } catch (error) {
    showStatus({ state: "error", message: `cannot start ${command}: ${error}` });
    const fix =
      resolved.source === "PATH"
        ? "Install the Linux x64 package of this extension, which carries the server, put `wellspring` on PATH, or set wellspring.serverPath to the binary."
        : "Set wellspring.serverPath to a working binary, or clear it to use the one this extension carries.";
    const choice = await vscode.window.showErrorMessage(`Wellspring: cannot start the server \`${command}\` (${error}). ${fix}`, "Open Settings");
    if (choice) await vscode.commands.executeCommand("workbench.action.openSettings", "wellspring.serverPath");
    return;
  }
  const info = await started.sendRequest(ext.serverInfo).catch(() => undefined);
  output.info(`server info: ${JSON.stringify(info)}`);
  warmedLines.clear();
  warmSoon(vscode.window.activeTextEditor, 0);
  if (info && !heardStatus) showStatus({ state: info.state, message: `wellspring ${info.version}`, backend: info.backend });
}

// How long the cursor rests on a new line before the server is asked to warm it.
const WARM_AFTER_MS = 500;
let warmTimer: NodeJS.Timeout | undefined;
// The line last warmed in each document, so moving along a line or typing on it asks nothing.
const warmedLines = new Map<string, number>();

/** Asks the server to evaluate the prompt at the editor's cursor while the model is idle. */
function warmSoon(editor: vscode.TextEditor | undefined, delayMs: number): void {
  if (warmTimer) clearTimeout(warmTimer);
  if (!editor) return;
  warmTimer = setTimeout(() => {
    const running = client;
    if (!running?.isRunning() || vscode.window.activeTextEditor !== editor) return;
    const document = editor.document;
    const position = editor.selection.active;
    const uri = document.uri.toString();
    if (delayMs > 0 && warmedLines.get(uri) === position.line) return;
    warmedLines.set(uri, position.line);
    const params = running.code2ProtocolConverter.asTextDocumentPositionParams(document, position);
    void running.sendNotification(ext.warm, params).catch((error) => output.warn(`warming: ${error}`));
  }, delayMs);
}

async function restart(): Promise<void> {
  const old = client;
  client = undefined;
  await old?.dispose().catch((error) => output.warn(`stopping the server: ${error}`));
  await start();
}

let lastLatencyMs: number | undefined;
let lastState: string | undefined;

function showStatus(status: ext.StatusParams): void {
  // The log records each change of state (not every progress step), so it tells when the model got ready.
  if (status.state !== lastState) output.info(`status: ${status.state}: ${status.message}`);
  lastState = status.state;
  const icons = {
    loading: "$(loading~spin)",
    ready: "$(check)",
    error: "$(error)",
    disabled: "$(circle-slash)",
    noModel: "$(cloud-download)",
  };
  lastLatencyMs = status.lastLatencyMs ?? lastLatencyMs;
  let text = `${icons[status.state] ?? "$(question)"} Wellspring`;
  if (status.state === "loading" && status.progress !== undefined) text += ` ${Math.round(status.progress * 100)}%`;
  else if (status.state === "noModel") text += ": choose a model";
  else if (status.state !== "ready") text += `: ${status.state}`;
  else if (lastLatencyMs !== undefined) text += ` ${Math.round(lastLatencyMs)} ms`;
  statusItem.text = text;
  statusItem.command = status.state === "noModel" ? "wellspring.chooseModel" : "wellspring.showMenu";
  const device = status.device && status.device.layersOffloaded > 0 ? describeDevice(status.device) : undefined;
  statusItem.tooltip = [status.message, status.model, status.backend, device].filter(Boolean).join(" · ");
  statusItem.accessibilityInformation = { label: `Wellspring ${status.state}: ${status.message}` };
  statusItem.backgroundColor =
    status.state === "error" ? new vscode.ThemeColor("statusBarItem.errorBackground")
    : status.state === "noModel" ? new vscode.ThemeColor("statusBarItem.warningBackground")
    : undefined;
}

async function showMenu(): Promise<void> {
  const enabled = vscode.workspace.getConfiguration("wellspring").get<boolean>("completion.enabled", true);
  const items: (vscode.QuickPickItem & { command: string })[] = [
    { label: `${enabled ? "$(debug-pause) Disable" : "$(play) Enable"} inline completion`, command: "wellspring.toggleCompletion" },
    { label: "$(comment-discussion) Chat with selection", command: "wellspring.chatWithSelection" },
    { label: "$(database) Choose model…", command: "wellspring.chooseModel" },
    { label: "$(pulse) Health check", command: "wellspring.serverInfo" },
    { label: "$(output) Show server log", command: "wellspring.showLog" },
    { label: "$(debug-restart) Restart server", command: "wellspring.restartServer" },
  ];
  const picked = await vscode.window.showQuickPick(items, { title: "Wellspring" });
  if (picked) await vscode.commands.executeCommand(picked.command);
}

async function toggleCompletion(): Promise<void> {
  const config = vscode.workspace.getConfiguration("wellspring");
  const seen = config.inspect<boolean>("completion.enabled");
  const target = seen?.workspaceValue !== undefined ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global;
  await config.update("completion.enabled", !config.get<boolean>("completion.enabled", true), target);
}

async function healthCheck(): Promise<void> {
  const running = client?.isRunning() ? client : undefined;
  let info: ext.ServerInfoResult | undefined;
  let failure: string | undefined = running ? undefined : "it is not running";
  if (running) info = await running.sendRequest(ext.serverInfo).catch((error) => ((failure = `${error}`), undefined));
  const { lines, problems } = healthReport(serverInUse, info, failure);
  // Counters exist only once a model is loaded.
  const stats = running && info?.state === "ready" ? await running.sendRequest(ext.stats).catch(() => undefined) : undefined;
  if (stats) {
    const reused = stats.nTokensReused / Math.max(1, stats.nTokensReused + stats.nTokensEvaluated);
    lines.push(`  ${stats.nCompletions} completions, ${Math.round(reused * 100)}% of prompt tokens reused, ${stats.nErrors} errors`);
  }
  output.info(`health check:\n${lines.join("\n")}`);
  if (problems.length === 0) {
    const device = info?.device && info.device.layersOffloaded > 0 ? ` (${describeDevice(info.device)})` : "";
    void vscode.window.showInformationMessage(
      `Wellspring ${info?.version}: ${info?.state}, model ${info?.model ?? "(none)"} on ${info?.backend}${device}` +
        (stats ? `; ${stats.nCompletions} completions, ${stats.nErrors} errors` : ""),
    );
    return;
  }
  const choice = await vscode.window.showWarningMessage(`Wellspring health check: ${problems.join("; ")}`, "Choose Model", "Show Log");
  if (choice === "Choose Model") await chooseModel(modelChoice);
  else if (choice === "Show Log") output.show(true);
}

/** "NVIDIA H100 80GB HBM3, 28/28 layers, 1.9 GiB of 80 GiB (planned 2.0 GiB)" for health checks and tooltips. */
function describeDevice(device: ext.DeviceInfo): string {
  const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;
  const memory =
    device.memoryUsed !== null && device.memoryTotal !== null
      ? `, ${gib(device.memoryUsed)} of ${gib(device.memoryTotal)}` +
        (device.memoryPlanned !== null ? ` (planned ${gib(device.memoryPlanned)})` : "")
      : "";
  return `${device.name}, ${device.layersOffloaded}/${device.layers} layers${memory}`;
}

/** Runs a server command with a cancellable progress notification; undefined when cancelled. */
async function executeServerCommand<T>(title: string, command: string, args: unknown): Promise<T | undefined> {
  const running = client;
  const progress = { location: vscode.ProgressLocation.Notification, title, cancellable: true };
  try {
    if (!running?.isRunning()) throw new Error("the server is not running");
    return await vscode.window.withProgress(progress, (_, token) =>
      running.sendRequest(lc.ExecuteCommandRequest.type, { command, arguments: [args] }, token),
    );
  } catch (error) {
    if (error instanceof lc.ResponseError && error.code === lc.LSPErrorCodes.RequestCancelled) return undefined;
    // The server shows a command's failure itself (window/showMessage), so it is only logged here.
    output.error(`${command} failed: ${error}`);
    if (!(error instanceof lc.ResponseError)) void vscode.window.showErrorMessage(`Wellspring: ${error instanceof Error ? error.message : error}`);
    throw error;
  }
}

function selectionTarget(): ext.RangeArgs | undefined {
  const editor = vscode.window.activeTextEditor;
  if (!editor || !client || !["file", "untitled"].includes(editor.document.uri.scheme)) return undefined;
  const c2p = client.code2ProtocolConverter;
  return { textDocument: c2p.asTextDocumentIdentifier(editor.document), range: c2p.asRange(editor.selection) };
}

async function instructPrompt(args?: ext.RangeArgs): Promise<void> {
  const target = args ?? selectionTarget();
  if (!target) return;
  const instruction = await vscode.window.showInputBox({
    title: "Wellspring: Edit with Instruction",
    prompt: "How should the selection be rewritten?",
    placeHolder: "e.g. add error handling",
  });
  if (!instruction) return;
  const instructArgs: ext.InstructArgs = { ...target, instruction };
  // The server applies the edit itself through workspace/applyEdit.
  await executeServerCommand("Wellspring: editing…", ext.INSTRUCT_COMMAND, instructArgs).catch(() => undefined);
}

async function chatWithSelection(): Promise<void> {
  const target = selectionTarget();
  if (!target) {
    void vscode.window.showErrorMessage("Wellspring: open a file and select code to chat about");
    return;
  }
  const question = await vscode.window.showInputBox({
    title: "Wellspring: Chat with Selection",
    prompt: "Ask about the selection",
    placeHolder: "e.g. what does this do?",
  });
  if (!question) return;
  const chatArgs: ext.ChatArgs = { chatId: randomUUID(), ...target, question };
  chats.open(chatArgs.chatId, question);
  try {
    const result = await executeServerCommand<ext.ChatResult>("Wellspring: answering…", ext.CHAT_COMMAND, chatArgs);
    chats.finish(chatArgs.chatId, result ? { text: result.text } : { note: "cancelled" });
  } catch (error) {
    chats.finish(chatArgs.chatId, { note: `failed: ${error instanceof Error ? error.message : error}` });
  }
}
