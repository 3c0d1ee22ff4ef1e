// Real-editor test: the packaged extension in code-server (the real VS Code workbench) driven
// through headless Chromium, talking to the real wellspring server on the tiny test model.
// Run by scripts/test-vscode.sh, which installs everything and passes the paths below.
//
// Checks, in order: with no model configured and an empty model cache, the extension asks which
// model to use (the default's download with its size, a GGUF file, built-in models) and the GGUF
// chosen in the workbench's file dialog is loaded; the extension runs the server it was given
// (wellspring.serverPath, or the one a platform package carries); the server gets ready (status
// bar) and the status bar menu opens; typing shows ghost text from the server and Tab accepts it into the document
// (checked on disk after saving); "Chat with Selection" streams into a chat view and Cancel stops
// it; the Explain code action streams into a view the server opened; "Edit with instruction…"
// asks for the instruction and runs (then is cancelled); the menu toggles inline completion
// (didChangeConfiguration) and restarts the server; the health check lists the server, the model,
// FIM support and the backend; no error notification is left on screen.

import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set (run scripts/test-vscode.sh)`);
  return value;
};
const codeServer = env("CODE_SERVER_ENTRY");
// Empty: the package carries its server and no wellspring.serverPath is set.
const serverBin = env("WELLSPRING_BIN", "");
const model = env("WELLSPRING_TEST_MODEL");
const vsix = env("WELLSPRING_VSIX");
const artifacts = env("ARTIFACTS_DIR");
const chromiumPath = env("CHROMIUM", "/usr/bin/chromium");
// With a real model: the start the ghost text must have (what a person would accept). The run then
// ends once the suggestion is accepted; the chat steps need no real model and take long with one.
const expectGhost = env("WELLSPRING_EXPECT_GHOST", "");
// Every wait below is bounded; WAIT_SCALE stretches them on a slow machine.
const scale = Number(env("WAIT_SCALE", "1"));
const seconds = (n) => n * 1000 * scale;

const started = Date.now();
const log = (message) => console.log(`[e2e ${((Date.now() - started) / 1000).toFixed(1)}s] ${message}`);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "wellspring-vscode-"));
const workspace = path.join(tmp, "workspace");
const userData = path.join(tmp, "user-data");
const extensions = path.join(tmp, "extensions");
// The shared engine's socket and log go here: an engine of this test's own, gone with the folder.
const runtime = path.join(tmp, "runtime");
// An empty model cache: no model is configured either, so the server starts with none (first run).
const cache = path.join(tmp, "cache");
fs.mkdirSync(runtime, { mode: 0o700 });
fs.mkdirSync(artifacts, { recursive: true });
fs.mkdirSync(workspace);
fs.mkdirSync(path.join(userData, "User"), { recursive: true });
fs.mkdirSync(path.join(userData, "Machine"), { recursive: true });

const source = "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n\n\n";
const file = path.join(workspace, "fib.py");
fs.writeFileSync(file, source);
// Paths are machine-scoped settings: in code-server (a remote window) they belong in the remote
// machine's settings, which VS Code reads from <user-data>/Machine.
fs.writeFileSync(
  path.join(userData, "Machine", "settings.json"),
  JSON.stringify(serverBin ? { "wellspring.serverPath": serverBin } : {}, null, 2),
);
fs.writeFileSync(
  path.join(userData, "User", "settings.json"),
  JSON.stringify(
    {
      "wellspring.model.nCtx": 2048,
      "wellspring.model.nGpuLayers": 0,
      "wellspring.completion.maxTokens": 16,
      // A quiet workbench: nothing but the editor may take Tab or focus.
      "workbench.startupEditor": "none",
      "workbench.tips.enabled": false,
      "workbench.enableExperiments": false,
      "security.workspace.trust.enabled": false,
      "telemetry.telemetryLevel": "off",
      "update.mode": "none",
      "extensions.autoCheckUpdates": false,
      "extensions.autoUpdate": false,
      "extensions.ignoreRecommendations": true,
      "chat.commandCenter.enabled": false,
      "editor.quickSuggestions": { other: false, comments: false, strings: false },
      "editor.suggestOnTriggerCharacters": false,
      "editor.wordBasedSuggestions": "off",
      "editor.autoClosingBrackets": "never",
      "editor.autoClosingQuotes": "never",
      "editor.autoIndent": "none",
      "editor.inlineSuggest.enabled": true,
      "files.autoSave": "off",
    },
    null,
    2,
  ),
);

const children = [];
let browser;
let page;

function codeServerArgs(...rest) {
  return [codeServer, "--user-data-dir", userData, "--extensions-dir", extensions, "--config", path.join(tmp, "config.yaml"), ...rest];
}

/** Starts code-server on a free port and resolves its URL once it listens. */
function startCodeServer() {
  const args = codeServerArgs("--auth", "none", "--bind-addr", "127.0.0.1:0", "--disable-telemetry", "--disable-update-check",
    "--disable-workspace-trust", "--disable-getting-started-override", workspace);
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, XDG_RUNTIME_DIR: runtime, XDG_CACHE_HOME: cache } });
  children.push(child);
  const logFile = fs.createWriteStream(path.join(artifacts, "code-server.log"));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("code-server did not start listening within 60 s")), seconds(60));
    const scan = (chunk) => {
      logFile.write(chunk);
      const match = /HTTP server listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(chunk.toString());
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout.on("data", scan);
    child.stderr.on("data", scan);
    child.on("exit", (code) => reject(new Error(`code-server exited early with status ${code}; see code-server.log`)));
  });
}

async function step(name, body) {
  log(`${name}…`);
  try {
    const result = await body();
    log(`${name}: ok`);
    return result;
  } catch (error) {
    throw new Error(`${name}: ${error.message}`, { cause: error });
  }
}

async function screenshot(name) {
  if (page) await page.screenshot({ path: path.join(artifacts, `${name}.png`) }).catch(() => {});
}

/** The extension's log (server stderr and the LSP trace) from code-server's log folder, and the shared engine's log. */
function wellspringLog() {
  const found = [];
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (/wellspring/i.test(entry.name) && entry.name.endsWith(".log")) found.push(full);
    }
  };
  if (fs.existsSync(path.join(userData, "logs"))) walk(path.join(userData, "logs"));
  const engines = path.join(runtime, "wellspring");
  if (fs.existsSync(engines)) {
    for (const name of fs.readdirSync(engines)) if (name.endsWith(".log")) found.push(path.join(engines, name));
  }
  return found.map((f) => fs.readFileSync(f, "utf8")).join("\n");
}

async function runCommand(title) {
  await page.keyboard.press("F1");
  const input = page.locator(".quick-input-widget input");
  await input.waitFor({ state: "visible", timeout: seconds(10) });
  await input.fill(`>${title}`);
  await page.locator(".quick-input-list .monaco-list-row", { hasText: title }).first().waitFor({ timeout: seconds(10) });
  await page.keyboard.press("Enter");
}

async function main() {
  await step("install the extension", async () => {
    const out = execFileSync(process.execPath, codeServerArgs("--install-extension", vsix), { encoding: "utf8" });
    if (!/successfully installed/i.test(out)) throw new Error(`code-server did not install ${vsix}:\n${out}`);
  });
  const url = await step("start code-server", startCodeServer);

  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  page.on("pageerror", (error) => log(`page error: ${error.message}`));

  await step("load the workbench", async () => {
    await page.goto(`${url}/?folder=${encodeURIComponent(workspace)}`);
    await page.locator(".monaco-workbench .part.statusbar").waitFor({ timeout: seconds(60) });
  });

  await step("with no model, the extension asks which one to use, with the download's size (first run)", async () => {
    const picker = page.locator(".quick-input-widget", { hasText: "Wellspring needs a model" });
    await picker.waitFor({ state: "visible", timeout: seconds(60) }).catch(() => {
      throw new Error("the extension did not ask for a model");
    });
    const rows = page.locator(".quick-input-list .monaco-list-row");
    await rows.first().waitFor({ timeout: seconds(10) });
    const offered = (await rows.allInnerTexts()).map((row) => row.replace(/\s+/g, " "));
    log(`offered: ${JSON.stringify(offered)}`);
    if (!offered.some((row) => /Download Qwen2\.5-Coder 1\.5B base.*about 1\.6 GB/.test(row))) {
      throw new Error(`no download of the default model with its size among ${JSON.stringify(offered)}`);
    }
    if (!offered.some((row) => /Use qwen2\.5-coder-0\.5b/.test(row))) throw new Error(`no built-in model among ${JSON.stringify(offered)}`);
    await screenshot("0-choose-model");
    await rows.filter({ hasText: "Choose a GGUF file" }).first().click();
    // The workbench's own file dialog: a path box with the files below it. It fills the box with
    // its starting folder once that folder is listed, which can land after a path typed early, and
    // it spends an accept on catching up with a typed path; so type the path and accept until the
    // dialog closes, typing it again whenever the box no longer holds it.
    const dialog = page.locator(".quick-input-widget");
    const input = dialog.locator("input");
    await input.waitFor({ state: "visible", timeout: seconds(10) });
    await until(async () => (await input.inputValue()).endsWith("/"), "the file dialog never showed its starting folder", seconds(10));
    for (let attempt = 1; ; attempt++) {
      if ((await input.inputValue()) !== model) {
        await input.fill(model);
        await dialog.locator(".quick-input-list .monaco-list-row", { hasText: path.basename(model) }).first()
          .waitFor({ timeout: seconds(10) });
      }
      await dialog.getByRole("button", { name: "Use This Model" }).click({ timeout: seconds(5) }).catch(async (error) => {
        if (await dialog.isVisible()) throw error;
      });
      const closed = await dialog.waitFor({ state: "hidden", timeout: seconds(5) }).then(() => true, () => false);
      if (closed) break;
      if (attempt === 6) {
        const shown = (await dialog.innerText().catch(() => "")).replace(/\s+/g, " ").slice(0, 400);
        throw new Error(`the file dialog did not take ${model} after ${attempt} accepts; it shows: ${shown}`);
      }
      log(`the file dialog is still open after accept ${attempt} (its box holds ${JSON.stringify(await input.inputValue())}); again`);
    }
  });

  await step("open fib.py", async () => {
    await page.keyboard.press("Control+P");
    const input = page.locator(".quick-input-widget input");
    await input.waitFor({ state: "visible", timeout: seconds(10) });
    await input.fill("fib.py");
    await page.locator(".quick-input-list .monaco-list-row", { hasText: "fib.py" }).first().waitFor({ timeout: seconds(20) });
    await page.keyboard.press("Enter");
    await page.locator(".editor-instance .monaco-editor .view-lines").first().waitFor({ timeout: seconds(20) });
  });

  // The extension's own item; the workbench's progress item ("Wellspring: loading the model") shares the label's start.
  const ownItem = '.statusbar-item[id$="wellspring.status"]';
  const status = page.locator(ownItem);
  await step("extension activates and the server answers (status bar)", async () => {
    await status.waitFor({ timeout: seconds(60) });
    // "starting" until the server answers wellspring/serverInfo, "loading" until the model is in.
    await page.locator(`${ownItem}[aria-label^="Wellspring ready"]`).waitFor({ timeout: seconds(120) }).catch(async () => {
      throw new Error(`status bar says ${JSON.stringify(await status.getAttribute("aria-label"))}, not ready`);
    });
    await screenshot("1-ready");
  });

  await step("the extension runs the server it was given (serverPath, or the one it carries)", async () => {
    const expected = serverBin ? `server: ${serverBin} (wellspring.serverPath)` : /server: \S+\/server\/wellspring \(carried by the extension\)/;
    await until(() => (typeof expected === "string" ? wellspringLog().includes(expected) : expected.test(wellspringLog())),
      `the extension's log does not say it started ${serverBin || "the server it carries"}`, seconds(10),
      () => wellspringLog().split("\n").filter((line) => /server: /.test(line)).slice(-3).join("\n"));
  });

  await step("the open file's prompt is evaluated before the first keystroke (wellspring/warm)", async () => {
    await until(() => /warmed.*fib\.py/.test(wellspringLog()), "the server logged no warming of fib.py", seconds(60),
      () => wellspringLog().split("\n").filter((line) => /warm/.test(line)).slice(-3).join("\n"));
  });

  await step("clicking the status bar item opens the Wellspring menu", async () => {
    await status.click();
    await page.locator(".quick-input-list .monaco-list-row", { hasText: "inline completion" }).first()
      .waitFor({ timeout: seconds(10) });
    await page.locator(".quick-input-list .monaco-list-row", { hasText: "Restart server" }).first().waitFor({ timeout: seconds(5) });
    await page.keyboard.press("Escape");
  });

  const typed = "def main():\n    print(fib";
  const before = source + typed;
  let ghost = "";
  await step("typing shows ghost text from the server", async () => {
    await page.locator(".editor-instance .monaco-editor .view-lines").first().click();
    await page.keyboard.press("Control+End");
    await page.keyboard.type(typed, { delay: 20 });
    const ghostText = page.locator(".monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text");
    await ghostText.first().waitFor({ timeout: seconds(90) }).catch(() => {
      throw new Error("no ghost text appeared within 90 s of typing");
    });
    ghost = (await ghostText.allTextContents()).join("").replace(/\u00a0/g, " ");
    if (expectGhost) {
      // The suggestion for the last keystroke replaces any earlier one.
      ghost = await until(async () => {
        const shown = (await ghostText.allTextContents()).join("").replace(/\u00a0/g, " ");
        return shown.startsWith(expectGhost) ? shown : undefined;
      }, `the ghost text does not start with ${JSON.stringify(expectGhost)}`, seconds(30),
      async () => (await ghostText.allTextContents()).join(""));
    }
    log(`ghost text: ${JSON.stringify(ghost)}`);
    await screenshot(expectGhost ? "2-ghost-text-real-model" : "2-ghost-text");
  });

  await step("Tab accepts the suggestion into the document", async () => {
    await page.keyboard.press("Tab");
    const saved = await save();
    if (!(saved.startsWith(before) && saved.length > before.length)) {
      throw new Error(`the saved file did not grow past what was typed: ${JSON.stringify(saved)}`);
    }
    const inserted = saved.slice(before.length);
    log(`inserted: ${JSON.stringify(inserted)}`);
    // The ghost text is drawn in pieces (spans, extra lines), so compare without whitespace.
    const squash = (text) => text.replace(/\s+/g, "");
    if (squash(ghost) === "") throw new Error(`the ghost text ${JSON.stringify(ghost)} is only whitespace`);
    if (!squash(inserted).startsWith(squash(ghost).slice(0, 20))) {
      throw new Error(`the inserted text ${JSON.stringify(inserted)} is not the ghost text ${JSON.stringify(ghost)}`);
    }
    await screenshot("3-accepted");
  });
  if (expectGhost) {
    log(`the real model's suggestion starts with ${JSON.stringify(expectGhost)} and was accepted; the rest runs on the tiny model`);
    return;
  }

  const question = "What does this code do";
  await step("Chat with Selection streams an answer, and Cancel stops it", async () => {
    await page.keyboard.press("Escape");
    await page.keyboard.press("Control+A");
    await runCommand("Wellspring: Chat with Selection");
    const input = page.locator(".quick-input-widget input");
    await input.waitFor({ state: "visible", timeout: seconds(10) });
    await input.fill(question);
    await page.keyboard.press("Enter");
    const chatEditor = page.locator('.monaco-editor[data-uri^="wellspring-chat:"]');
    await chatEditor.waitFor({ timeout: seconds(20) }).catch(() => {
      throw new Error("no chat view opened within 20 s");
    });
    // The view shows the question, the answer so far and " …" until the stream ends; the view
    // follows the end, so the question may have scrolled away.
    const viewText = async () => (await chatEditor.locator(".view-lines").innerText()).replace(/\u00a0/g, " ");
    const answerOf = (text) => text.replace(`## ${question}`, "").replace(/…\s*$/, "").trim();
    const streaming = await until(async () => {
      const text = await viewText();
      return answerOf(text) !== "" && /…\s*$/.test(text) ? text : undefined;
    }, "no streamed text appeared in the chat view while the answer was being generated", seconds(60), viewText);
    log(`chat view while streaming: ${JSON.stringify(streaming.slice(-120))}`);
    await screenshot("4-chat-streaming");

    // Cancel from the progress notification; a short answer may already have ended.
    const cancel = page.locator(".notification-toast", { hasText: "Wellspring: answering" }).getByRole("button", { name: "Cancel" });
    if (await cancel.isVisible()) {
      await cancel.click();
      await until(async () => /\(cancelled\)/.test(await viewText()), "the chat view does not say (cancelled) after Cancel",
        seconds(20), viewText);
    } else {
      await until(async () => !/…\s*$/.test(await viewText()), "the chat view never showed the end of the answer", seconds(60), viewText);
    }
    await screenshot("5-chat-ended");
    // The extension logs how many wellspring/chatProgress notifications made up the answer.
    const chunks = await until(() => /chat [\w-]+: (\d+) chunks streamed/.exec(wellspringLog())?.[1],
      "the extension log does not say how many chunks streamed", seconds(10));
    if (Number(chunks) === 0) throw new Error("the extension log shows no streamed wellspring/chatProgress chunk");
    log(`chatProgress chunks: ${chunks}`);
  });

  await step("the Explain code action streams into a view the server opened", async () => {
    await page.locator(".editor-instance .monaco-editor .view-lines").first().click();
    await page.keyboard.press("Control+A");
    await pickCodeAction("Wellspring: Explain", "6-code-actions");
    // The server chooses this stream's chatId, so the extension opens a second view for it.
    const explainEditor = page.locator('.monaco-editor[data-uri^="wellspring-chat:/2"]');
    await explainEditor.waitFor({ timeout: seconds(30) }).catch(() => {
      throw new Error("no view opened for the server-started Explain stream within 30 s");
    });
    const viewText = async () => (await explainEditor.locator(".view-lines").innerText()).replace(/\u00a0/g, " ");
    const text = await until(async () => {
      const lines = (await viewText()).split("\n").slice(1).join("\n").replace(/…\s*$/, "").trim();
      return lines !== "" ? lines : undefined;
    }, "no streamed text appeared in the Explain view", seconds(60), viewText);
    log(`explain view: ${JSON.stringify(text.slice(0, 120))}`);
    await screenshot("7-explain");
  });

  await step("the Edit with instruction… code action asks for an instruction, and Cancel stops the edit", async () => {
    const editor = page.locator(".editor-instance .monaco-editor .view-lines").first();
    await editor.click();
    const unedited = await save();
    await page.keyboard.press("Control+Home");
    await page.keyboard.press("Shift+ArrowDown");
    await pickCodeAction("Wellspring: Edit with instruction");
    const input = page.locator(".quick-input-widget input");
    await input.waitFor({ state: "visible", timeout: seconds(10) });
    await page.locator(".quick-input-widget", { hasText: "Edit with Instruction" }).waitFor({ timeout: seconds(5) });
    await input.fill("add a docstring");
    await page.keyboard.press("Enter");
    // wellspring.instruct runs under a cancellable progress notification. A rewrite by the tiny
    // model takes minutes (up to 768 grammar-constrained tokens), so the test cancels it; where
    // it already ended, the edit must have landed or an error must say why not.
    const editing = page.locator(".notification-toast", { hasText: "Wellspring: editing" });
    await editing.waitFor({ timeout: seconds(10) }).catch(() => {
      throw new Error("no \"Wellspring: editing…\" progress notification after entering the instruction");
    });
    await screenshot("8-instructing");
    const cancel = editing.getByRole("button", { name: "Cancel" });
    if (await cancel.isVisible()) {
      await cancel.click();
      await editing.waitFor({ state: "detached", timeout: seconds(20) }).catch(() => {
        throw new Error("the editing notification stayed after Cancel");
      });
      // An edit that was still applied would leave the document dirty; give a late one time.
      await page.waitForTimeout(1000);
      if (await isDirty()) throw new Error("the document was edited although the edit was cancelled");
      const now = await save();
      if (now !== unedited) {
        throw new Error(`the file changed although the edit was cancelled: ${JSON.stringify(unedited)} became ${JSON.stringify(now)}`);
      }
    } else {
      const errorShown = page.locator(".notification-toast", { hasText: "Wellspring: Edit with instruction" });
      await until(async () => (await isDirty()) || (await errorShown.isVisible()),
        "the instruction neither changed the document nor showed an error", seconds(20));
    }
  });

  await step("the menu's Disable inline completion updates the setting and the server takes it", async () => {
    const changes = () => (wellspringLog().match(/configuration changed/g) ?? []).length;
    const before = changes();
    await status.click();
    const row = page.locator(".quick-input-list .monaco-list-row", { hasText: "Disable inline completion" }).first();
    await row.waitFor({ timeout: seconds(10) });
    await row.click();
    const settingsFile = path.join(userData, "User", "settings.json");
    await until(() => /"wellspring\.completion\.enabled":\s*false/.test(fs.readFileSync(settingsFile, "utf8")),
      "settings.json does not say wellspring.completion.enabled: false", seconds(10));
    // The server logs each workspace/didChangeConfiguration it accepts.
    await until(() => changes() > before, "the server logged no accepted configuration change", seconds(10),
      () => wellspringLog().split("\n").filter((line) => /configuration/.test(line)).slice(-3).join("\n"));
  });

  await step("the menu's Restart server starts a new server that gets ready", async () => {
    const starts = () => (wellspringLog().match(/server info: /g) ?? []).length;
    // The status bar still says ready until the renderer draws the new server's first status, so
    // the extension's log (one line per change of state) tells when the new server is ready.
    const readies = () => (wellspringLog().match(/status: ready: /g) ?? []).length;
    const before = starts();
    const readyBefore = readies();
    await status.click();
    const row = page.locator(".quick-input-list .monaco-list-row", { hasText: "Restart server" }).first();
    await row.waitFor({ timeout: seconds(10) });
    await row.click();
    await until(() => starts() > before, "the restarted server did not answer wellspring/serverInfo", seconds(30));
    await until(() => readies() > readyBefore, "the restarted server did not report ready", seconds(60));
    await page.locator(`${ownItem}[aria-label^="Wellspring ready"]`).waitFor({ timeout: seconds(60) }).catch(async () => {
      throw new Error(`after the restart the status bar says ${JSON.stringify(await status.getAttribute("aria-label"))}`);
    });
  });

  await step("the health check lists the server, the model, FIM support and the backend", async () => {
    await runCommand("Wellspring: Server Health Check");
    const report = () => wellspringLog().split("health check:").slice(1).pop() ?? "";
    await until(() => /✓ server: wellspring [\s\S]*✓ model: [\s\S]*✓ fill-in-the-middle[\s\S]*✓ backend: /.test(report()),
      "the health check's report is not in the extension's log", seconds(20), () => report().slice(0, 600));
    if (report().includes("✗")) throw new Error(`the health check found problems: ${report()}`);
  });

  await step("no error notification was shown", async () => {
    const errors = await page.locator(".notification-toast", { has: page.locator(".codicon-error") }).allInnerTexts();
    if (errors.length > 0) throw new Error(`error notifications: ${JSON.stringify(errors)}`);
  });
}

const fileTab = () => page.locator(".tabs-container .tab", { hasText: path.basename(file) }).first();

/** Whether the test file's editor has unsaved changes. */
async function isDirty() {
  return /\bdirty\b/.test((await fileTab().getAttribute("class")) ?? "");
}

/**
 * Saves the focused test file and returns its text on disk once the save has landed: the tab is
 * clean and two reads a moment apart agree (the key press returns before the workbench writes).
 */
async function save() {
  await page.keyboard.press("Control+S");
  const read = () => fs.readFileSync(file, "utf8");
  let last;
  return await until(async () => {
    const text = read();
    const settled = !(await isDirty()) && text === last;
    last = text;
    return settled ? text : undefined;
  }, "the test file was not saved", seconds(20), read);
}

/** Opens the code action menu (Ctrl+.) on the selection and picks the action titled `title`. */
async function pickCodeAction(title, screenshotName) {
  const action = page.locator(".action-widget .monaco-list-row", { hasText: title }).first();
  // On a loaded machine the workbench sometimes drops the request it made for Ctrl+. (it shows
  // "No code actions available" without asking the server); asking again is what a person does.
  const none = page.locator(".monaco-editor-overlaymessage", { hasText: "No code actions available" });
  await until(async () => {
    if (await action.isVisible()) return true;
    const dropped = await none.isVisible();
    if (dropped || !(await page.locator(".action-widget").isVisible())) {
      if (dropped) log("the workbench showed no code actions; pressing Ctrl+. again");
      await page.keyboard.press("Control+.");
      await page.waitForTimeout(1000);
    }
    return false;
  }, `the code action menu has no ${JSON.stringify(title)}`, seconds(30));
  if (screenshotName) await screenshot(screenshotName);
  // The menu blocks the pointer until the mouse moves over it.
  const box = await action.boundingBox();
  await page.mouse.move(box.x + 5, box.y + 5);
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2, { steps: 3 });
  await action.click();
}

/** Polls `probe` until it returns a truthy value; fails with `what` (and `show()`) after `timeout`. */
async function until(probe, what, timeout, show) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) {
      const shown = show ? `; the view shows ${JSON.stringify(await show())}` : "";
      throw new Error(`${what} (waited ${timeout / 1000} s)${shown}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

let failed = false;
try {
  await main();
  log(`all checks passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
} catch (error) {
  failed = true;
  console.error(`\nFAIL: ${error.message}`);
  await screenshot("failure");
  const notes = await page?.locator(".notification-list-item-message").allInnerTexts().catch(() => []);
  if (notes?.length) console.error(`notifications on screen: ${JSON.stringify(notes)}`);
  const serverLog = wellspringLog();
  fs.writeFileSync(path.join(artifacts, "wellspring.log"), serverLog);
  console.error(`--- last lines of the extension/server log, without llama.cpp's (full log in ${artifacts}) ---`);
  console.error(serverLog.split("\n").filter((line) => !line.includes("llama-cpp-2")).slice(-40).join("\n"));
} finally {
  if (!failed) fs.writeFileSync(path.join(artifacts, "wellspring.log"), wellspringLog());
  await browser?.close().catch(() => {});
  for (const child of children) child.kill();
  fs.rmSync(tmp, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
