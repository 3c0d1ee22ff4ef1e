--- Wellspring: a language server that keeps a local code model resident and serves ghost text,
--- code actions and chat. Used by `vim.lsp.enable('wellspring')` (Neovim 0.11+); override any
--- field with `vim.lsp.config('wellspring', { ... })` or `require('wellspring').setup()`.
---
--- `filetypes` is left unset on purpose: a code model completes any file, and the server's
--- `completion.disabled_languages` setting is the one place to switch languages off.

---@type vim.lsp.Config
return {
  -- `wellspring serve`, with the binary found at each start: on PATH, else the one
  -- :WellspringInstall put into the plugin's bin/ (lua/wellspring/binary.lua).
  cmd = require('wellspring.binary').cmd,
  root_markers = { '.git', '.hg', '.jj' },
  -- Neovim 0.11 does not announce inline completion itself; the plugin draws it (see ghost.lua).
  -- The experimental part tells the server this plugin shows wellspring/chatProgress streams and
  -- runs the client-side wellspring.instructPrompt command.
  capabilities = {
    textDocument = { inlineCompletion = { dynamicRegistration = false } },
    experimental = { wellspring = { chatProgress = true, instructPrompt = true } },
  },
  -- The server reads the same object from both; `settings` is what didChangeConfiguration sends.
  init_options = {},
  settings = { wellspring = {} },
  handlers = {
    ['wellspring/status'] = function(...)
      return require('wellspring').on_status(...)
    end,
    ['wellspring/chatProgress'] = function(...)
      return require('wellspring.chat').on_progress(...)
    end,
  },
}
