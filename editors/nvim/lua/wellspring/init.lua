--- Wellspring for Neovim: finds the binary, passes settings, turns ghost text on, maps keys and
--- keeps the status line. Prompts, scheduling and edits all live in the server; binary.lua,
--- install.lua and model.lua find, install and choose what the server needs to run.
local M = {}

---@class wellspring.Config
M.config = {
  --- The server binary. Unset, it is `wellspring` on PATH, else the one :WellspringInstall put
  --- into the plugin's bin/ folder.
  bin = nil, ---@type string?
  --- The whole command line; overrides `bin` when set.
  cmd = nil, ---@type string[]|fun(dispatchers: vim.lsp.rpc.Dispatchers, config: vim.lsp.ClientConfig): vim.lsp.rpc.PublicClient|nil
  --- The server's settings (same keys as its TOML config, see docs/configuration.md).
  settings = {},
  --- Call `vim.lsp.enable('wellspring')` from setup().
  enable = true,
  --- Ghost text while typing.
  inline_completion = true,
  --- Insert-mode keys; set one to false to leave it unmapped. Each falls through to its own key
  --- when no suggestion is shown.
  keymaps = {
    accept = '<Tab>',
    accept_word = '<M-Right>',
    accept_line = '<M-C-Right>',
    dismiss = '<C-]>',
    next = '<M-]>',
    prev = '<M-[>',
  },
}

local status = nil ---@type table?

--- Applies options, registers the LSP config and, unless `enable = false`, enables it.
---@param opts? wellspring.Config
function M.setup(opts)
  M.config = vim.tbl_deep_extend('force', M.config, opts or {}) -- Lists are replaced whole.
  local settings = M.config.settings
  vim.lsp.config('wellspring', {
    cmd = M.config.cmd or (M.config.bin and { M.config.bin, 'serve' }) or require('wellspring.binary').cmd,
    init_options = settings,
    settings = { wellspring = settings },
  })
  for _, client in ipairs(vim.lsp.get_clients({ name = 'wellspring' })) do
    client.settings = { wellspring = settings }
    client:notify('workspace/didChangeConfiguration', { settings = client.settings })
  end
  if M.config.enable then
    vim.lsp.enable('wellspring')
  end
end

--- Merges `patch` into the server settings: running servers get it through
--- `workspace/didChangeConfiguration`, servers started later through the LSP config.
---@param patch table
function M.update_settings(patch)
  M.config.settings = vim.tbl_deep_extend('force', M.config.settings, patch)
  vim.lsp.config('wellspring', { init_options = patch, settings = { wellspring = patch } })
  for _, client in ipairs(vim.lsp.get_clients({ name = 'wellspring' })) do
    client.settings = vim.tbl_deep_extend('force', client.settings or {}, { wellspring = patch })
    client:notify('workspace/didChangeConfiguration', { settings = client.settings })
  end
end

--- Ghost text: Neovim's own on 0.12+ (accept and cycle only), the plugin's extmarks on 0.11.
--- Every key falls through to its ordinary meaning when it had nothing to do.
---@param client vim.lsp.Client
---@param bufnr integer
function M.attach(client, bufnr)
  vim.lsp.commands['wellspring.instructPrompt'] = M.instruct_prompt
  if not M.config.inline_completion or not client:supports_method('textDocument/inlineCompletion', bufnr) then
    return
  end
  M.warm_on_focus(client, bufnr)
  local native, actions = vim.lsp.inline_completion, nil
  if native and native.enable then
    native.enable(true, { bufnr = bufnr })
    local select = native.select or native.jump
    actions = {
      accept = function()
        return native.get() ~= false
      end,
      next = function()
        return select({ count = 1 }) ~= false
      end,
      prev = function()
        return select({ count = -1 }) ~= false
      end,
    }
  else
    actions = require('wellspring.ghost')
    actions.attach(client, bufnr)
  end
  for action, lhs in pairs(M.config.keymaps) do
    if lhs and actions[action] then
      vim.keymap.set('i', lhs, function()
        if not actions[action](bufnr) then
          vim.api.nvim_feedkeys(vim.keycode(lhs), 'n', false)
        end
      end, { buffer = bufnr, desc = 'Wellspring: ' .. action:gsub('_', ' ') })
    end
  end
end

local warmed_lines = {} ---@type table<integer, integer>

--- Asks the server to evaluate the prompt at the cursor while its model is idle
--- (`wellspring/warm`), so the first keystroke there costs only the line. `force` asks even when
--- this line was the last one warmed.
---@param client vim.lsp.Client
---@param bufnr integer
---@param force? boolean
function M.warm(client, bufnr, force)
  if bufnr ~= vim.api.nvim_get_current_buf() or client:is_stopped() then
    return
  end
  local line = vim.api.nvim_win_get_cursor(0)[1]
  if not force and warmed_lines[bufnr] == line then
    return
  end
  warmed_lines[bufnr] = line
  client:notify('wellspring/warm', vim.lsp.util.make_position_params(0, client.offset_encoding))
end

--- Warms when the buffer is entered and when the cursor rests (`CursorHold`) on another line.
---@param client vim.lsp.Client
---@param bufnr integer
function M.warm_on_focus(client, bufnr)
  local group = vim.api.nvim_create_augroup('wellspring_warm_' .. bufnr, { clear = true })
  vim.api.nvim_create_autocmd('BufEnter', {
    group = group,
    buffer = bufnr,
    callback = function()
      M.warm(client, bufnr, true)
    end,
  })
  vim.api.nvim_create_autocmd({ 'CursorHold', 'CursorHoldI' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      M.warm(client, bufnr)
    end,
  })
  vim.api.nvim_create_autocmd('BufWipeout', {
    group = group,
    buffer = bufnr,
    callback = function()
      warmed_lines[bufnr] = nil
    end,
  })
  M.warm(client, bufnr, true)
end

--- Client side of the "Edit with instruction…" code action: asks for the instruction, then
--- lets the server rewrite the range (it applies the edit itself with workspace/applyEdit).
---@param command lsp.Command
---@param ctx table
function M.instruct_prompt(command, ctx)
  local client = vim.lsp.get_client_by_id(ctx.client_id)
  local target = command.arguments and command.arguments[1]
  if not client or type(target) ~= 'table' then
    return vim.notify('Wellspring: instructPrompt needs { textDocument, range }', vim.log.levels.ERROR)
  end
  vim.ui.input({ prompt = 'Wellspring instruction: ' }, function(instruction)
    if not instruction or vim.trim(instruction) == '' then
      return
    end
    local args = vim.tbl_extend('force', target, { instruction = instruction })
    client:request('workspace/executeCommand', {
      command = 'wellspring.instruct',
      arguments = { args },
    }, function(err)
      -- The server shows a failure itself (window/showMessage); this only logs it.
      if err then
        vim.lsp.log.warn('wellspring.instruct failed: ' .. err.message)
      end
    end, ctx.bufnr)
  end)
end

--- Handler for `wellspring/status`.
function M.on_status(_, params, ctx)
  local was_ready = status and status.state == 'ready'
  status = params
  -- Warming needs the model: warm the current buffer once it is in.
  local client = ctx and vim.lsp.get_client_by_id(ctx.client_id)
  if params.state == 'ready' and not was_ready and client then
    M.warm(client, vim.api.nvim_get_current_buf(), true)
  end
  -- No model yet: ask which one, once a session; a model without FIM tokens: say so, once.
  require('wellspring.model').on_status(client, params)
  vim.cmd.redrawstatus({ bang = true })
  vim.api.nvim_exec_autocmds('User', { pattern = 'WellspringStatus', modeline = false })
end

--- A status-line component: the server's last status message, or '' when none arrived.
---@return string
function M.status()
  if not status then
    return ''
  end
  local text = status.message ~= '' and status.message or status.state
  if status.state == 'loading' and status.progress then
    text = ('%s %d%%'):format(text, math.floor(status.progress * 100))
  end
  return 'Wellspring: ' .. text
end

--- The last `wellspring/status` params, for scripts.
function M.last_status()
  return status
end

return M
