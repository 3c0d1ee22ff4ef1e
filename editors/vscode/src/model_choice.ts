// The first run and the choice of model: when the server has no model (state "noModel": none was
// configured and the default is not downloaded) the extension asks once, with the download's
// size, and never lets completions stay off silently; "Wellspring: Choose Model" asks again at
// any time. Also the one-time warning for a model without fill-in-the-middle tokens.

import * as vscode from "vscode";
import * as ext from "./lsp_ext";

/** "1.6 GB", "491 MB": a download's size as people read it (the server's wording too). */
export function describeBytes(bytes: number): string {
  return bytes >= 1e9 ? `${(bytes / 1e9).toFixed(1)} GB` : `${Math.round(bytes / 1e6)} MB`;
}

/** What the choice needs from the extension. */
export interface ModelChoiceHost {
  /** Executes `wellspring.downloadModel` on the running server. */
  downloadModel(): Promise<void>;
  output: vscode.LogOutputChannel;
}

type Choice = vscode.QuickPickItem & { action: "download" | "file" | "builtin" | "spec"; spec?: string };

let asked = false;
let fimWarned = false;
let lastOffer: ext.ModelOffer | undefined;
/** Follows the status while a download the user asked for runs. */
let following: ((status: ext.StatusParams) => void) | undefined;

/** Called with every `wellspring/status`. */
export function onStatus(status: ext.StatusParams, host: ModelChoiceHost): void {
  following?.(status);
  if (status.state === "noModel" && status.offer) {
    lastOffer = status.offer;
    // Once per session: a dismissed question is not asked again on every status.
    if (!asked) {
      asked = true;
      void chooseModel(host);
    }
  }
  if (status.state === "ready" && status.fim === false && !fimWarned) {
    fimWarned = true;
    void vscode.window
      .showWarningMessage(
        "Wellspring: this model has no fill-in-the-middle tokens, so completions only continue the text before the cursor. " +
          "Choose a FIM-trained base model (the default Qwen2.5-Coder 1.5B base, or any Qwen2.5-Coder, StarCoder2 or CodeLlama base GGUF).",
        "Choose Model",
      )
      .then((picked) => (picked ? chooseModel(host) : undefined));
  }
}

/** Asks which model to use: the offered download, a local GGUF, a built-in model or any spec. */
export async function chooseModel(host: ModelChoiceHost): Promise<void> {
  const offer = lastOffer;
  const items: Choice[] = [];
  if (offer) {
    items.push({
      label: `$(cloud-download) Download ${offer.description}`,
      description: `about ${describeBytes(offer.bytes)}`,
      detail: `The default model (${offer.spec}), downloaded once into the model cache.`,
      action: "download",
    });
  }
  items.push({ label: "$(file) Choose a GGUF file…", description: "a model already on this machine", action: "file" });
  for (const builtin of offer?.builtins ?? []) {
    items.push({
      label: `$(package) Use ${builtin.name}`,
      description: `${builtin.description}, ${describeBytes(builtin.bytes)}`,
      action: "builtin",
      spec: builtin.name,
    });
  }
  items.push({ label: "$(edit) Enter a model…", description: "a path, hf:OWNER/REPO/FILE.gguf, ollama:NAME or a built-in name", action: "spec" });
  const picked = await vscode.window.showQuickPick(items, {
    title: "Wellspring needs a model",
    placeHolder: offer ? `No model yet: the default is not downloaded (${describeBytes(offer.bytes)}). Completions start once a model is chosen.` : "Choose the model for completions",
    ignoreFocusOut: true,
  });
  switch (picked?.action) {
    case "download":
      if (offer) await download(host, offer);
      return;
    case "file": {
      const files = await vscode.window.showOpenDialog({
        canSelectMany: false,
        filters: { "GGUF models": ["gguf"] },
        openLabel: "Use This Model",
        title: "Wellspring: choose a GGUF model",
      });
      if (files?.[0]) await setModel(files[0].fsPath);
      return;
    }
    case "builtin":
      if (picked.spec) await setModel(picked.spec);
      return;
    case "spec": {
      const spec = await vscode.window.showInputBox({
        title: "Wellspring: model",
        prompt: "A GGUF path, hf:OWNER/REPO/FILE.gguf, ollama:NAME[:TAG] or a built-in name",
        ignoreFocusOut: true,
      });
      if (spec?.trim()) await setModel(spec.trim());
      return;
    }
    default:
      void vscode.window.showInformationMessage(
        "Wellspring: completions are off until a model is chosen. Click Wellspring in the status bar, or run \"Wellspring: Choose Model\".",
      );
  }
}

/** Sets `wellspring.model.path` for the user; the server loads it (downloading it first if need be). */
async function setModel(spec: string): Promise<void> {
  await vscode.workspace.getConfiguration("wellspring").update("model.path", spec, vscode.ConfigurationTarget.Global);
}

/** Asks the server to download the offered model, with a progress notification until it is loaded. */
async function download(host: ModelChoiceHost, offer: ext.ModelOffer): Promise<void> {
  const title = `Wellspring: downloading ${offer.description} (${describeBytes(offer.bytes)})`;
  await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title }, async (progress) => {
    let shown = 0;
    const finished = new Promise<ext.StatusParams>((resolve) => {
      following = (status) => {
        if (status.state === "loading" && status.progress !== undefined) {
          // The server reports the download as the first half of loading.
          const percent = Math.round(status.progress * 100);
          progress.report({ increment: percent - shown, message: percent < 50 ? `${percent * 2}% downloaded` : "loading" });
          shown = percent;
        } else if (status.state !== "loading") {
          resolve(status);
        }
      };
    });
    try {
      await host.downloadModel();
      const end = await finished;
      if (end.state === "ready") void vscode.window.showInformationMessage(`Wellspring: ${offer.description} is ready`);
      else if (end.state === "error") void vscode.window.showErrorMessage(`Wellspring: the download failed: ${end.message}`);
    } catch (error) {
      host.output.error(`downloading the model: ${error}`);
      void vscode.window.showErrorMessage(`Wellspring: cannot download the model: ${error instanceof Error ? error.message : error}`);
    } finally {
      following = undefined;
    }
  });
}

/** One line per thing a working setup needs, and what is missing, for the health check. */
export function healthReport(
  server: { command: string; source: string },
  info: ext.ServerInfoResult | undefined,
  failure?: string,
): { lines: string[]; problems: string[] } {
  const lines: string[] = [];
  const problems: string[] = [];
  const ok = (line: string) => lines.push(`✓ ${line}`);
  const missing = (line: string) => {
    lines.push(`✗ ${line}`);
    problems.push(line);
  };
  if (!info) {
    missing(`server: ${server.command} (${server.source}) does not answer${failure ? `: ${failure}` : ""}`);
    return { lines, problems };
  }
  ok(`server: wellspring ${info.version}, ${info.binary ?? server.command} (${server.source})`);
  switch (info.state) {
    case "ready":
      ok(`model: ${info.model}`);
      break;
    case "loading":
      lines.push(`… model: loading ${info.model ?? ""}`.trimEnd());
      break;
    case "noModel":
      missing(
        `model: none yet; the default (${info.offer?.description}, about ${describeBytes(info.offer?.bytes ?? 0)}) is not downloaded: run "Wellspring: Choose Model"`,
      );
      break;
    case "disabled":
      missing("model: none configured (wellspring.model.path is empty): run \"Wellspring: Choose Model\"");
      break;
    default:
      missing(`model: not loaded (${info.state}); check wellspring.model.path or run "Wellspring: Choose Model"`);
  }
  if (info.fim === true) ok("fill-in-the-middle: the model has FIM tokens");
  else if (info.fim === false)
    missing("fill-in-the-middle: the model has no FIM tokens, so completions only continue the text before the cursor; choose a FIM-trained base model");
  if (info.device) {
    const layers = info.device.layersOffloaded > 0 ? `${info.device.layersOffloaded}/${info.device.layers} layers on ${info.device.name}` : `the CPU (${info.device.name})`;
    ok(`backend: ${info.device.backend}, ${layers}`);
  } else if (info.state === "ready") {
    ok(`backend: ${info.backend}`);
  }
  if (info.engine) ok(`engine: ${info.engine.mode === "shared" ? `shared process ${info.engine.pid}, ${info.engine.clients} window(s)` : "inside this server"}`);
  if (info.chatModelState === "unavailable") missing(`chat model: unavailable (${info.chatModelError})`);
  if (info.draftModelState === "unavailable") missing(`draft model: unavailable (${info.draftModelError}); completions go on without it`);
  return { lines, problems };
}
